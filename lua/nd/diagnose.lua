-- nd.diagnose — turning parsed nitro-cli outputs into findings (code, severity, message with the numbers, evidence,
-- remediation), in one place for diag10, triage and operators' runbooks. Parsing is nd.nitro's; knowledge is
-- nd.nitro_errors'; this module only decides what to tell the operator.
local errors = require "nd.nitro_errors"

local M = {}

M.ALLOCATOR_UNIT = "nitro-enclaves-allocator.service"
M.ALLOCATOR_YAML = "/etc/nitro_enclaves/allocator.yaml"

-- nitro_error(parsed, context) -> finding | nil. parsed: the result of nd.nitro.parse_errors (or a record's .errors);
-- context: what was being done ("running basic"). The root cause (the first block) is the finding; the blocks after
-- it are evidence (an E39 after another block is marked as a consequence).
function M.nitro_error(parsed, context)
  local root = parsed and parsed.root
  if not root then return nil end
  local kb = errors.get(root.code) or {}
  local evidence = { root.headline }
  for _, d in ipairs(root.details or {}) do evidence[#evidence + 1] = d end
  if root.err_log_path then evidence[#evidence + 1] = "error log: " .. root.err_log_path end
  for _, b in ipairs(parsed.blocks or {}) do
    if b ~= root then
      evidence[#evidence + 1] = "then " .. b.code .. (b.secondary and " (secondary: a consequence, not the cause)" or "")
    end
  end
  local f = root.facts or {}
  local where = context and (context .. ": ") or ""
  local message, remediation
  if root.code == "E26" and f.min_memory_mib then
    message = string.format("%s--memory %s MiB is too little for this EIF; it needs at least %d MiB (4 × the EIF size)",
      where, tostring(f.memory_mib or "?"), f.min_memory_mib)
    remediation = string.format("run with memory=%d or more (and keep allocator.yaml memory_mib ≥ %d, then restart %s)",
      f.min_memory_mib, f.min_memory_mib, M.ALLOCATOR_UNIT)
  elseif root.code == "E27" then
    message = string.format("%s--memory %s MiB is more than the hugepage memory the allocator reserved",
      where, tostring(f.memory_mib or "?"))
    remediation = string.format("raise memory_mib in %s to ≥ %s and restart the allocator: nitrodiag allocator memory_mib=%s",
      M.ALLOCATOR_YAML, tostring(f.memory_mib or "the requested memory"), tostring(f.memory_mib or "N"))
  elseif root.code == "E19" and f.file then
    message = string.format("%s%s of '%s' failed", where, tostring(f.operation or "an operation"), f.file)
    remediation = f.file == "/dev/nitro_enclaves" and
      "load the driver (modprobe nitro_enclaves) and put the user in group ne (usermod -aG ne USER)" or
      (kb.remediation and table.concat(kb.remediation, "; ") or nil)
  else
    message = string.format("%s%s", where, root.title or kb.title or "nitro-cli error")
    remediation = kb.remediation and table.concat(kb.remediation, "; ") or nil
  end
  return { code = root.code, severity = "fail", message = message, evidence = evidence, remediation = remediation }
end

return M
