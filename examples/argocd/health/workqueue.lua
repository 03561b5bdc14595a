-- Argo CD health check for workpools.dev/WorkQueue.
--
-- Shipped as `resource.customizations.health.workpools.dev_WorkQueue` in ../argocd-cm-patch.yaml
-- (regenerate it with `python examples/argocd/generate.py` after editing this file).
-- Runs in Argo CD's sandbox: Lua 5.1 (gopher-lua) with only the base, table and a safe os
-- library, so no string library; every field may be absent. Argo CD itself reports objects
-- being deleted as Progressing ("Pending deletion") before this script runs.
--
-- Rules, first match wins:
--   no status, or status.observedGeneration < metadata.generation -> Progressing
--   condition Invalid or PoolNotFound is True                    -> Degraded, with its message
--   phase Paused (spec.paused)                                    -> Suspended
--   phase Ready (an online worker serves the queue)               -> Healthy
--   phase NotReady (no online worker serves it)                   -> Healthy, with a message:
--     a queue is usable before its workers exist, so it must not hold back later sync waves
--   anything else                                                 -> Progressing
--   Healthy and Suspended messages add an open limit window (condition LimitWindow) and a priority conflict
-- A PriorityConflict (the requested priority is held by another queue) is not a fault: the
-- queue works at another priority. It is added to the message, never to the status; so are
-- the queue's Late runs (status.lateRuns; the latePolicy says what happens to them).

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

local waiting = notObserved(obj, "WorkQueue")
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
  hs.message = "WorkQueue is paused (spec.paused): no runs are admitted from it"
elseif status.phase == "Ready" then
  hs.status = "Healthy"
  local ready = findCondition(status, "Ready")
  if ready ~= nil then
    hs.message = describe(ready)
  else
    hs.message = "Ready"
  end
elseif status.phase == "NotReady" then
  hs.status = "Healthy"
  hs.message = "No worker online yet; runs wait in this queue until a worker serving it starts"
else
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to set the phase"
  return hs
end

local conflict = findCondition(status, "PriorityConflict")
if isTrue(conflict) then
  hs.message = hs.message .. "; " .. describe(conflict)
end
-- An open limit window (spec.concurrencyLimitSchedule) is a deliberate limit, not a fault: said, not judged.
local window = findCondition(status, "LimitWindow")
if isTrue(window) then
  hs.message = hs.message .. "; " .. describe(window)
end
if status.lateRuns ~= nil and status.lateRuns > 0 then
  hs.message = hs.message .. "; " .. status.lateRuns .. " late (more than 15s past their time)"
end
return hs
