-- Serin carries on from where the Canary was paused.
obj.spec.suspend = false
return obj
