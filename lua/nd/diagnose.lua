-- nd.diagnose — turning parsed nitro-cli outputs and KMS proxy log summaries into findings (code, severity, message with the numbers, evidence,
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

-- ---- KMS proxy logs -------------------------------------------------------------------------------------------

local fmt_num = require("nd.pretty").number

local function counter(res, name)
  for _, c in ipairs(res.counters) do if c.name == name then return c end end
end

local function delta(res, name)
  local c = counter(res, name)
  return c and c.delta or 0
end

local function errors_of(res, code)
  for _, e in ipairs(res.errors) do if e.code == code then return e.count end end
  return 0
end

local function ids_with(res, code, max)
  local out = {}
  for _, id in ipairs(res.ids) do
    if id.code == code and #out < (max or 5) then
      out[#out + 1] = string.format("kms_request_id %s (request_id %s)", id.kms_request_id, id.request_id or "-")
    end
  end
  return out
end

-- kms_logs(res [, {unit =}]) -> findings from an nd.kmslog result (the scanner's result():
-- errors, counters, ids, records, latency, stats, plus sources). The interpretation rules of the seed runbook:
-- throttled + rising rate_limited_total, timeouts + retries, access denied never retried, and the old proxy's
-- logging defects (wrapped lines, PascalCase codes, circuit_wait_total counting every request).
function M.kms_logs(res, opts)
  opts = opts or {}
  local out = {}
  local s = { finding = function(_, f) out[#out + 1] = f end }
  local st = res.stats
  if st.events == 0 then
    local what = {}
    for _, src in ipairs(res.sources or {}) do what[#what + 1] = src.path end
    s:finding{ code = "KMS_NO_EVENTS", severity = "warn",
      message = string.format("no KMS proxy events in %s (%d lines read)", table.concat(what, ", "), st.lines),
      evidence = { string.format("%d noise, %d other JSON, %d malformed lines", st.noise, st.other, st.malformed) },
      remediation = "check that this is the proxy's log: kms_proxy_host writes JSON lines to stdout (journalctl -u "
        .. (opts.unit or "kms-proxy-host") .. " -o cat), nitrodiag-kms-proxy to its log file; give the file or `journal` as source" }
    return out
  end
  if st.wrapped > 0 then
    s:finding{ code = "KMS_WRAPPED_LOG", severity = "info",
      message = string.format("%d events were tracing-wrapped (escaped JSON inside fields.json) and were unwrapped", st.wrapped),
      remediation = "plain greps miss these lines; read them with nitrodiag kms-logs, or log one JSON object per line" }
  end
  local pascal = 0
  for _, rec in ipairs(res.records) do
    if rec.raw_code and rec.raw_code:match("^%u") then pascal = pascal + 1 end
  end
  if pascal > 0 then
    s:finding{ code = "KMS_PASCALCASE_CODES", severity = "info",
      message = "error codes are logged in PascalCase (UpstreamThrottled) while the wire uses snake_case; both were normalised",
      remediation = "a grep for '\"error_code\":\"upstream_throttled\"' misses these lines: filter with code= instead" }
  end
  if st.malformed > 0 then
    s:finding{ code = "KMS_MALFORMED_LINES", severity = "info",
      message = string.format("%d lines looked like JSON but did not parse (truncated or cut by the logger); ignored", st.malformed) }
  end

  local throttled = errors_of(res, "upstream_throttled")
  local rate_limited = errors_of(res, "rate_limited")
  local rl_delta, thr_delta = delta(res, "rate_limited_total"), delta(res, "throttled_total")
  if throttled > 0 or rate_limited > 0 then
    local rising = rl_delta > 0
    s:finding{ code = "KMS_THROTTLED", severity = "warn",
      message = string.format("%d response%s throttled by KMS%s%s", throttled, throttled == 1 and "" or "s",
        rate_limited > 0 and string.format(", %d refused by the proxy's own rate limit", rate_limited) or "",
        rising and string.format("; rate_limited_total rose by %s", fmt_num(rl_delta)) or ""),
      evidence = (function()
        local ev = { string.format("throttled_total +%s, rate_limited_total +%s", fmt_num(thr_delta), fmt_num(rl_delta)) }
        for _, e in ipairs(ids_with(res, "upstream_throttled")) do ev[#ev + 1] = e end
        return ev
      end)(),
      remediation = rising
        and "the request rate is above what KMS grants: lower the proxy's RPS cap and concurrency (token bucket, max in flight) and check the KMS request quotas for this account and region (Service Quotas)"
        or "KMS throttled before the proxy's own rate limit engaged: lower the RPS cap/concurrency so the proxy limits first, and check the KMS request quotas (Service Quotas)" }
  end

  local timeouts = errors_of(res, "timeout")
  local retries = delta(res, "retries_total")
  if timeouts > 0 then
    s:finding{ code = "KMS_TIMEOUTS", severity = "warn",
      message = string.format("%d request%s timed out%s", timeouts, timeouts == 1 and "" or "s",
        retries > 0 and string.format("; retries_total rose by %s", fmt_num(retries)) or " (retries_total did not rise)"),
      evidence = { string.format("timeouts_total +%s, retries_total +%s", fmt_num(delta(res, "timeouts_total")), fmt_num(retries)),
                   res.latency.count > 0 and string.format("latency p99 %s ms, max %s ms", fmt_num(res.latency.p99), fmt_num(res.latency.max)) or nil },
      remediation = retries > 0
        and "network or regional trouble between the host and KMS: check the route/VPC endpoint and the AWS Health dashboard, the end-to-end deadline (800 ms) and per-attempt timeouts, and whether the circuit breaker opens"
        or "requests time out without retries: the deadline leaves no room for a retry; check the deadlines and the network path to KMS" }
  end

  local denied = errors_of(res, "upstream_access_denied")
  if denied > 0 then
    local ev = ids_with(res, "upstream_access_denied")
    -- the proxy records a denied Recipient request's attestation PCR0 and module_id: name the refused image
    local images, order = {}, {}
    for _, id in ipairs(res.ids) do
      if id.code == "upstream_access_denied" and id.attestation_pcr0 and not images[id.attestation_pcr0] then
        images[id.attestation_pcr0] = id.attestation_module_id or "?"
        order[#order + 1] = id.attestation_pcr0
      end
    end
    local image = ""
    for i, p in ipairs(order) do
      if i <= 3 then
        image = image .. string.format("%s PCR0 %s (module %s)", i == 1 and "; denied for image" or ",", p, images[p])
      end
    end
    s:finding{ code = "KMS_ACCESS_DENIED", severity = "fail",
      message = string.format("%d request%s denied by KMS (IAM or key policy); these are never retried%s", denied, denied == 1 and "" or "s", image),
      evidence = ev,
      remediation = "fix the instance role's IAM policy or the KMS key policy (kms:Decrypt/GenerateDataKey for the role, kms:RecipientAttestation conditions matching the enclave's PCRs); look the kms_request_ids up in CloudTrail (mode=ids)"
        .. (order[1] and ("; check the key policy against this image: nitrodiag kms-policy POLICY.json pcr0=" .. order[1]
          .. " role_arn=<the instance role ARN>") or "") }
  end

  local unavailable = errors_of(res, "upstream_unavailable")
  if unavailable > 0 then
    s:finding{ code = "KMS_UNAVAILABLE", severity = "warn",
      message = string.format("%d requests failed with KMS unavailable (5xx or unreachable)", unavailable),
      remediation = "regional KMS trouble or no route to the endpoint: check the AWS Health dashboard, the VPC endpoint and the vsock-proxy allowlist" }
  end

  local circuit = errors_of(res, "circuit_open") + delta(res, "circuit_open_total")
  if circuit > 0 then
    s:finding{ code = "KMS_CIRCUIT_OPEN", severity = "warn",
      message = "the proxy's circuit breaker opened (requests refused while KMS kept failing)",
      remediation = "the breaker opens when ≥ 20% of ≥ 50 requests in 10 s fail: fix the errors above; it closes by itself after 5 s" }
  end

  local invalid = errors_of(res, "invalid_request")
  if invalid > 0 then
    s:finding{ code = "KMS_INVALID_REQUEST", severity = "warn",
      message = string.format("%d requests were rejected as invalid", invalid),
      remediation = "the enclave sent a malformed request (key_id, key_spec or ciphertext_blob): check the client version against the proxy's" }
  end

  local internal = errors_of(res, "internal")
  if internal > 0 then
    s:finding{ code = "KMS_INTERNAL", severity = "warn",
      message = string.format("%d requests failed inside the proxy (internal)", internal),
      remediation = "see the proxy's own error lines around those request_ids (mode=lines request_id=…)" }
  end

  local resets = 0
  for _, c in ipairs(res.counters) do if c.resets > resets then resets = c.resets end end
  if resets > 0 then
    s:finding{ code = "KMS_PROXY_RESTARTED", severity = "info",
      message = string.format("the counters went back to zero %d time(s): the proxy restarted; deltas count across restarts", resets) }
  end
  local cw = counter(res, "circuit_wait_total")
  local req = counter(res, "kms_requests_total")
  if cw and req and cw.delta > 0 and cw.delta == req.delta then
    s:finding{ code = "KMS_CIRCUIT_WAIT_MISCOUNTED", severity = "info",
      message = "circuit_wait_total rises with every request: the old kms_proxy_host counted every request there (a known defect); ignore it" }
  end
return out
end

return M
