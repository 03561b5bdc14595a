-- Argo CD health check for workpools.dev/FlowRun.
--
-- Shipped as `resource.customizations.health.workpools.dev_FlowRun` in ../argocd-cm-patch.yaml
-- (regenerate it with `python examples/argocd/generate.py` after editing this file).
-- Runs in Argo CD's sandbox: Lua 5.1 (gopher-lua) with only the base, table and a safe os
-- library, so no string library; every field may be absent. Argo CD itself reports objects
-- being deleted as Progressing ("Pending deletion") before this script runs.
--
-- Rules, first match wins:
--   no status.state yet (the operator has not queued the run)      -> Progressing
--   Completed                                                       -> Healthy
--   Cancelled (what the user asked for)                             -> Healthy
--   Failed, Crashed with a retry left (spec.retries)                -> Progressing: the operator
--     makes it its next attempt
--   Failed, Crashed                                                 -> Degraded, with status.message
--     Terminal states come before the generation check: an edit after the end (say
--     spec.cancel on a finished run) cannot change the outcome, so it must not turn a
--     finished run Progressing again.
--   status.observedGeneration < metadata.generation                 -> Progressing
--   condition Invalid or PoolNotFound is True                      -> Degraded, with its message
--   Paused (the flow suspended itself)                              -> Suspended
--   Scheduled, Pending, Running, Cancelling (since when: the pool's
--     cancellingTimeoutSeconds counts from there)                   -> Progressing
--   anything else                                                   -> Progressing
-- Messages name the state, the state name when it adds something (Late, AwaitingRetry), the
-- attempt after the first, the bound worker, and why a Scheduled run is not admitted yet
-- (condition Admitted=False).

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

-- "Running on worker w-1", "Scheduled (Late)", ...
local function describeRun(status)
  local text = status.state
  if status.stateName ~= nil and status.stateName ~= "" and status.stateName ~= status.state then
    text = text .. " (" .. status.stateName .. ")"
  end
  if status.attempt ~= nil and status.attempt > 1 then
    text = text .. ", attempt " .. status.attempt
  end
  if status.worker ~= nil and status.worker ~= "" then
    text = text .. " on worker " .. status.worker
  end
  return text
end

-- A Failed or Crashed run the operator will retry (core/retries.py): attempts left, no cancel.
local function retrying(obj, status)
  local spec = obj.spec or {}
  local attempt = status.attempt or 1
  return spec.retries ~= nil and attempt <= spec.retries and spec.cancel ~= true
end

local function withMessage(text, status)
  if status.message ~= nil and status.message ~= "" then
    return text .. ": " .. status.message
  end
  return text
end

hs = {}
local status = obj.status

if status == nil or status.state == nil then
  hs.status = "Progressing"
  local waiting = notObserved(obj, "FlowRun")
  if waiting == nil then
    waiting = "Waiting for the operator to queue the run"
  end
  hs.message = waiting
  return hs
end

local state = status.state
if state == "Completed" or state == "Cancelled" then
  hs.status = "Healthy"
  hs.message = withMessage(describeRun(status), status)
  return hs
end
if (state == "Failed" or state == "Crashed") and retrying(obj, status) then
  hs.status = "Progressing"
  hs.message = withMessage(describeRun(status), status) .. " (a retry follows)"
  return hs
end
if state == "Failed" or state == "Crashed" then
  hs.status = "Degraded"
  hs.message = withMessage(describeRun(status), status)
  return hs
end

local waiting = notObserved(obj, "FlowRun")
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = describeRun(status) .. " (" .. waiting .. ")"
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

if state == "Paused" then
  hs.status = "Suspended"
  hs.message = withMessage(describeRun(status), status)
  return hs
end

hs.status = "Progressing"
if state == "Scheduled" then
  local admitted = findCondition(status, "Admitted")
  if admitted ~= nil and admitted.status == "False" then
    hs.message = describeRun(status) .. ": " .. describe(admitted)
  else
    hs.message = describeRun(status)
  end
elseif state == "Cancelling" and status.cancellingSince ~= nil then
  -- The pool's cancellingTimeoutSeconds counts from here.
  hs.message = describeRun(status) .. " since " .. status.cancellingSince
elseif state == "Pending" or state == "Running" or state == "Cancelling" then
  hs.message = describeRun(status)
else
  hs.message = "Unknown state " .. describeRun(status)
end
return hs
