-- Argo CD health check for Serin's Canary (serin.dev/v1beta1, Kind Canary).
-- Argo CD runs it in gopher-lua (Lua 5.1) with only the base functions and `table`: no `string`
-- library, so no string methods either.
local sep = " --- "
local hs = {}

-- Serin's phases (serin/status.py Phase) as Argo CD's health. Waiting and WaitingPromotion are
-- gates that wait for an approval, which is what Suspended means to Argo CD. Serin never writes
-- Terminating or Terminated itself (Flagger does, while a Canary with revertOnDeletion is being
-- deleted): both mean the Canary is on its way out, which Argo CD reports as Progressing for any
-- object pending deletion.
local healthOfPhase = {
  Initializing = "Progressing",
  Initialized = "Healthy",
  Waiting = "Suspended",
  Progressing = "Progressing",
  WaitingPromotion = "Suspended",
  Promoting = "Progressing",
  Finalising = "Progressing",
  Succeeded = "Healthy",
  Failed = "Degraded",
  Terminating = "Progressing",
  Terminated = "Progressing",
}

-- The phase, the canary's weight and failed checks, the Promoted condition's message (Flagger's
-- words for the phase) and a request not yet acted on, as Argo CD's check of Flagger's Canary
-- joins them.
local function summary(status)
  local parts = {}
  if status.phase ~= nil and status.phase ~= "" then
    table.insert(parts, status.phase)
  end
  local weight = tonumber(status.canaryWeight) or 0
  if weight > 0 then
    table.insert(parts, "Canary Weight: " .. weight .. " %")
  end
  local failed = tonumber(status.failedChecks) or 0
  if failed > 0 then
    table.insert(parts, "Failed Checks: " .. failed)
  end
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.type == "Promoted" and condition.message ~= nil and condition.message ~= "" then
        table.insert(parts, condition.message)
      end
    end
  end
  local annotations = obj.metadata.annotations
  if annotations ~= nil and annotations["serin.dev/request"] ~= nil then
    table.insert(parts, "Requested: " .. annotations["serin.dev/request"] .. " (Serin acts on it at its next tick)")
  end
  return table.concat(parts, sep)
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "No status yet: waiting for Serin's first tick"
  return hs
end

-- A status written before the latest change of the spec says nothing about that change yet.
local generation = tonumber(obj.metadata.generation)
local observed = tonumber(status.observedGeneration)
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for Serin to observe generation " .. generation
    .. " (the status is of generation " .. observed .. ")"
  local known = summary(status)
  if known ~= "" then
    hs.message = hs.message .. sep .. known
  end
  return hs
end

local health = healthOfPhase[status.phase]
local suspended = obj.spec ~= nil and obj.spec.suspend == true

-- A rolled-back release stays Degraded when paused too: pausing undoes nothing, and Argo CD ranks
-- Degraded worse than Suspended, so an application does not hide the failure.
if suspended and health ~= "Degraded" then
  hs.status = "Suspended"
  hs.message = "Paused (spec.suspend is true)"
  local known = summary(status)
  if known ~= "" then
    hs.message = hs.message .. sep .. known
  end
  return hs
end

if status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for Serin to initialize the canary"
  return hs
end

if health == nil then
  -- A phase of a newer Serin than this check knows: say so rather than guess.
  hs.status = "Unknown"
  hs.message = "Unknown phase: " .. summary(status)
  return hs
end

hs.status = health
hs.message = summary(status)
if suspended then
  hs.message = hs.message .. sep .. "Paused (spec.suspend is true)"
end
return hs
