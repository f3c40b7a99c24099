-- Argo CD health check of akua.dev/AkuaCluster (argocd-cm key:
-- resource.customizations.health.akua.dev_AkuaCluster). See docs/gitops.md.
--
-- It reads only what the operator writes for kstatus: status.observedGeneration and the
-- Ready, Reconciling and Stalled conditions (each with its observedGeneration).
--   Degraded     Stalled=True (a failed create/suspend, rejected credentials, the Akua cluster
--                deleted outside Kubernetes, ...): a person has to act.
--   Suspended    the annotation akua.dev/paused is "true" (case and surrounding whitespace aside,
--                as the operator reads it): the operator does not reconcile.
--   Progressing  no status yet, an older generation observed, or Reconciling=True (an Akua
--                operation runs: create, suspend, resume, delete, ...).
--   Healthy      Ready=True for the current generation (active, or suspended as declared).
local hs = {}
local function finish(status, message)
  hs.status = status
  hs.message = message
  return hs
end

-- The operator reads akua.dev/paused as Python's value.strip().lower() == "true": trim the same
-- whitespace, ASCII (%s and \28-\31) and Unicode (in UTF-8).
local UNICODE_SPACES = {
  "\194\133", "\194\160", "\225\154\128", "\226\128\128", "\226\128\129", "\226\128\130",
  "\226\128\131", "\226\128\132", "\226\128\133", "\226\128\134", "\226\128\135",
  "\226\128\136", "\226\128\137", "\226\128\138", "\226\128\168", "\226\128\169",
  "\226\128\175", "\226\129\159", "\227\128\128",
}
local function trim(value)
  local before
  repeat
    before = value
    value = string.gsub(string.gsub(value, "^[%s\28-\31]+", ""), "[%s\28-\31]+$", "")
    for _, space in ipairs(UNICODE_SPACES) do
      local n = string.len(space)
      if string.sub(value, 1, n) == space then
        value = string.sub(value, n + 1)
      end
      if string.len(value) >= n and string.sub(value, -n) == space then
        value = string.sub(value, 1, -n - 1)
      end
    end
  until value == before
  return value
end

local meta = obj.metadata or {}
local annotations = meta.annotations or {}
local paused = annotations["akua.dev/paused"]
if paused ~= nil and string.lower(trim(paused)) == "true" then
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
