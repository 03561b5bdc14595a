-- Argo CD health check for workpools.dev/FlowSchedule.
--
-- Shipped as `resource.customizations.health.workpools.dev_FlowSchedule` in ../argocd-cm-patch.yaml
-- (regenerate it with `python examples/argocd/generate.py` after editing this file).
-- Runs in Argo CD's sandbox: Lua 5.1 (gopher-lua) with only the base, table and a safe os
-- library, so no string library; every field may be absent.
--
-- Rules, first match wins:
--   no status, or status.observedGeneration < metadata.generation -> Progressing
--   condition Invalid is True (the schedule cannot be evaluated)  -> Degraded, with its message
--   spec.suspend                                                   -> Suspended
--   condition Ready is True                                        -> Healthy, "next run at ..."
--   anything else                                                  -> Progressing
-- A schedule's runs have health checks of their own: a failed run does not make its schedule
-- Degraded (the next scheduled time will try again, as a CronJob's would).

local function findCondition(status, conditionType)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition ~= nil and condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function isTrue(condition)
  return condition ~= nil and condition.status == "True"
end

local function describe(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.type .. ": " .. condition.reason
  end
  return condition.type
end

-- A message when the operator has not seen the current spec yet, else nil.
local function notObserved(obj, kind)
  local generation = nil
  if obj.metadata ~= nil then
    generation = obj.metadata.generation
  end
  local observed = nil
  if obj.status ~= nil then
    observed = obj.status.observedGeneration
  end
  if observed ~= nil and (generation == nil or observed >= generation) then
    return nil
  end
  if generation ~= nil then
    return "Waiting for the operator to observe generation " .. generation
  end
  return "Waiting for the operator to observe this " .. kind
end

hs = {}
local status = obj.status

local waiting = notObserved(obj, "FlowSchedule")
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = waiting
  return hs
end

local invalid = findCondition(status, "Invalid")
if isTrue(invalid) then
  hs.status = "Degraded"
  hs.message = describe(invalid)
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "FlowSchedule is suspended (spec.suspend): no runs are created"
  return hs
end

local ready = findCondition(status, "Ready")
if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the operator to schedule the next run"
return hs
