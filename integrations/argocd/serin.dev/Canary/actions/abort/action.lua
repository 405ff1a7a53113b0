-- Roll the release under analysis back now.
-- Serin acts on the request at its next tick and removes the annotation.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["serin.dev/request"] = "abort"
return obj
