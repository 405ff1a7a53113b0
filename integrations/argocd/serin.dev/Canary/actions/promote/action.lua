-- Skip the remaining analysis steps and promote (through the confirm-promotion gate).
-- Serin acts on the request at its next tick and removes the annotation.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["serin.dev/request"] = "promote"
return obj
