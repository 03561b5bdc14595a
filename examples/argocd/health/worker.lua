-- Argo CD health check for workpools.dev/Worker.
--
-- Shipped as `resource.customizations.health.workpools.dev_Worker` in ../argocd-cm-patch.yaml
-- (regenerate it with `python examples/argocd/generate.py` after editing this file).
-- Runs in Argo CD's sandbox: Lua 5.1 (gopher-lua) with only the base, table and a safe os
-- library, so no string library; every field may be absent. Argo CD itself reports objects
-- being deleted as Progressing ("Pending deletion") before this script runs.
--
-- Rules, first match wins:
--   no status, or status.observedGeneration < metadata.generation -> Progressing
--     (a worker's first heartbeat comes before the operator has judged its liveness)
--   condition Invalid or PoolNotFound is True                    -> Degraded, with its message
--   phase Online                                                  -> Healthy
--   phase Offline after spec.draining (a deliberate stop)         -> Suspended
--   phase Offline otherwise                                       -> Degraded, with the last
--     heartbeat time: the process stopped heartbeating without draining, i.e. it crashed or
--     lost the API server, and its Running runs were marked Crashed
--   anything else                                                 -> Progressing

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
local spec = obj.spec
if spec == nil then
  spec = {}
end

local waiting = notObserved(obj, "Worker")
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

local assigned = 0
if status.assignedRuns ~= nil then
  assigned = status.assignedRuns
end
local heartbeat = "no heartbeat received"
if status.lastHeartbeatTime ~= nil then
  heartbeat = "last heartbeat at " .. status.lastHeartbeatTime
end

if status.phase == "Online" then
  hs.status = "Healthy"
  if spec.draining == true then
    hs.message = "Online, draining (takes no new runs); " .. assigned .. " runs assigned"
  else
    hs.message = "Online; " .. assigned .. " runs assigned"
  end
  return hs
end

if status.phase == "Offline" then
  if spec.draining == true then
    hs.status = "Suspended"
    hs.message = "Offline after draining (stopped deliberately); " .. heartbeat
  else
    local interval = 30
    if spec.heartbeatIntervalSeconds ~= nil then
      interval = spec.heartbeatIntervalSeconds
    end
    hs.status = "Degraded"
    hs.message = "Offline: " .. heartbeat .. " (expected every " .. interval .. "s)"
  end
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the operator to set the phase"
return hs
