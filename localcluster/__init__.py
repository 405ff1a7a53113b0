"""Local test cluster: a real kube-apiserver with fake nodes, and the helpers around it."""
