-- Argo CD health check of akua.dev/AkuaCluster (argocd-cm key:
-- resource.customizations.health.akua.dev_AkuaCluster). See docs/gitops.md.
--
-- It reads only what the operator writes for kstatus: status.observedGeneration and the
-- Ready, Reconciling and Stalled conditions (each with its observedGeneration).
--   Degraded     Stalled=True (a failed create/suspend, rejected credentials, the Akua cluster
--                deleted outside Kubernetes, ...): a person has to act.
--   Suspended    the annotation akua.dev/paused is "true": the operator does not reconcile.
--   Progressing  no status yet, an older generation observed, or Reconciling=True (an Akua
--                operation runs: create, suspend, resume, delete, ...).
--   Healthy      Ready=True for the current generation (active, or suspended as declared).
local hs = {}
local function finish(status, message)
  hs.status = status
  hs.message = message
  return hs
end

local meta = obj.metadata or {}
local annotations = meta.annotations or {}
local paused = annotations["akua.dev/paused"]
if paused ~= nil and string.lower(paused) == "true" then
  return finish("Suspended", "Reconciling is paused by the annotation akua.dev/paused")
end

local status = obj.status
if status == nil or status.conditions == nil then
  return finish("Progressing", "Waiting for the akua-operator to report")
end

local generation = meta.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  return finish("Progressing", "Waiting for the akua-operator to observe generation " .. generation)
end

local conditions = {}
for _, condition in ipairs(status.conditions) do
  conditions[condition.type] = condition
end

local function text(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.reason .. ": " .. condition.message
  end
  return condition.reason or ""
end

local stalled = conditions["Stalled"]
if stalled ~= nil and stalled.status == "True" then
  return finish("Degraded", text(stalled))
end
local reconciling = conditions["Reconciling"]
if reconciling ~= nil and reconciling.status == "True" then
  local message = text(reconciling)
  if status.progress ~= nil then
    message = status.progress .. " (" .. message .. ")"
  end
  return finish("Progressing", message)
end
local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  if ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration < generation then
    return finish("Progressing", "Ready was computed for an older generation")
  end
  return finish("Healthy", text(ready))
end
if ready ~= nil then
  return finish("Progressing", text(ready))
end
return finish("Progressing", "Waiting for the Ready condition")
