-- Argo CD health check for workpools.dev/WorkPool.
--
-- Shipped as `resource.customizations.health.workpools.dev_WorkPool` in ../argocd-cm-patch.yaml
-- (regenerate it with `python examples/argocd/generate.py` after editing this file).
-- Runs in Argo CD's sandbox: Lua 5.1 (gopher-lua) with only the base, table and a safe os
-- library, so no string library; every field may be absent. Argo CD itself reports objects
-- being deleted as Progressing ("Pending deletion") before this script runs.
--
-- Rules, first match wins:
--   no status, or status.observedGeneration < metadata.generation -> Progressing
--   condition Invalid or PoolNotFound is True                    -> Degraded, with its message
--   phase Paused (spec.paused)                                    -> Suspended
--   phase Ready (a worker is online)                              -> Healthy
--   phase NotReady (no worker online)                             -> Healthy, with a message:
--     a pool is usable before its workers exist, so it must not hold back later sync waves
--   anything else                                                 -> Progressing
--   Healthy messages add an open limit window (condition LimitWindow is True)

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

-- An open limit window (spec.concurrencyLimitSchedule) is a deliberate limit, not a fault: said, not judged.
local function withWindow(message, status)
  local window = findCondition(status, "LimitWindow")
  if isTrue(window) then
    return message .. "; " .. describe(window)
  end
  return message
end

hs = {}
local status = obj.status

local waiting = notObserved(obj, "WorkPool")
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = waiting
  return hs
end

for _, conditionType in ipairs({"Invalid", "PoolNotFound"}) do
  local condition = findCondition(status, conditionType)
  if isTrue(condition) then
    hs.status = "Degraded"
    hs.message = describe(condition)
    return hs
  end
end

if status.phase == "Paused" or isTrue(findCondition(status, "Paused")) then
  hs.status = "Suspended"
  hs.message = "WorkPool is paused (spec.paused): no runs are admitted from it"
  return hs
end

if status.phase == "Ready" then
  hs.status = "Healthy"
  local ready = findCondition(status, "Ready")
  if ready ~= nil then
    hs.message = withWindow(describe(ready), status)
  else
    hs.message = withWindow("Ready", status)
  end
  return hs
end

if status.phase == "NotReady" then
  hs.status = "Healthy"
  local total = 0
  if status.workers ~= nil and status.workers.total ~= nil then
    total = status.workers.total
  end
  if total > 0 then
    hs.message = "No worker online: all " .. total .. " registered workers are offline; runs wait in their queues"
  else
    hs.message = "No worker online yet; runs wait in their queues until a worker starts"
  end
  hs.message = withWindow(hs.message, status)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the operator to set the phase"
return hs
