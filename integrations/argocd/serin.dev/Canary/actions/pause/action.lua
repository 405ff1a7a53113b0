-- Serin takes no step while spec.suspend is true (an abort request is still acted on).
obj.spec.suspend = true
return obj
