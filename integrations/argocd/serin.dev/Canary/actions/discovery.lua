-- The actions Argo CD offers on Serin's Canary, enabled when Serin would act on them (serin/decide.py
-- turns down, with a Warning Event, a request that does not fit the phase).
local actions = {}
local status = obj.status
if status == nil then
  status = {}
end
local phase = status.phase
local suspended = obj.spec ~= nil and obj.spec.suspend == true
-- Promote and abort apply to a release under analysis only; while the Canary is paused Serin
-- turns down every request but abort.
local analysing = phase == "Progressing" or phase == "WaitingPromotion"
-- Retry analyses a rolled-back release again. A Canary whose initialization failed has none (no
-- revision was ever promoted): Serin keeps initializing it by itself.
local retriable = phase == "Failed" and status.lastPromotedSpec ~= nil and status.lastPromotedSpec ~= ""

actions["promote"] = {["disabled"] = suspended or not analysing}
actions["abort"] = {["disabled"] = not analysing}
actions["retry"] = {["disabled"] = suspended or not retriable}
actions["pause"] = {["disabled"] = suspended}
actions["resume"] = {["disabled"] = not suspended}
return actions
