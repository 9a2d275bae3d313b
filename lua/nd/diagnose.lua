-- nd.diagnose — from evidence to causes. Facts are extracted from any text an enclave problem leaves behind
-- (nitro-cli's `[ Exx ]` blocks and their numbers, err logs, the main log, allocator journal, console, vsock-proxy,
-- KMS tools, docker/linuxkit build output) plus host state when it is known; the cause rules (lua/nd/rules/<area>.lua,
-- then operators' rule files) read the facts and yield causes with evidence and a confidence; the causes are ranked
-- and follow-up errors are grouped under their root. Every cause is a code of nd.findings, so it reads the same in
-- triage, explain, diag10, doctor, eif and kms-logs. docs/diagnosis.md describes the rule format.
local errors = require "nd.nitro_errors"
local findings = require "nd.findings"
local nitrocli = require "nd.nitrocli"
local fs = require "nd.fs"

local M = {}

M.ALLOCATOR_UNIT = findings.ALLOCATOR_UNIT
M.ALLOCATOR_YAML = findings.ALLOCATOR_YAML

-- ---- facts ------------------------------------------------------------------------------------------------------

local Facts = {}
Facts.__index = Facts

-- facts:has(s) -> true when the plain string s occurs in the text
function Facts:has(s) return self.text:find(s, 1, true) ~= nil end
-- facts:line(pattern) -> the first line matching the Lua pattern, and its captures
function Facts:line(pat)
  for _, l in ipairs(self.lines) do
    local c = table.pack(l:match(pat))
    if c[1] ~= nil then return l, table.unpack(c, 1, c.n) end
  end
end
-- facts:all(pattern) -> every line matching the Lua pattern
function Facts:all(pat)
  local out = {}
  for _, l in ipairs(self.lines) do if l:find(pat) then out[#out + 1] = l end end
  return out
end
-- facts:count(s) -> how many lines hold the plain string s
function Facts:count(s)
  local n = 0
  for _, l in ipairs(self.lines) do if l:find(s, 1, true) then n = n + 1 end end
  return n
end
-- facts:cli_line(l) -> true when the line l is nitro-cli's own wording around an error (the `[ Exx ]` line, its
-- "Such error …" text, "For more details, please visit …", "If you open a support ticket, please provide the error
-- log found at …", "Failed connections: N"; src/common/document_errors.rs, src/enclave_proc_comm.rs), never words of
-- an application or a console. Rules that look for an application's error use it to skip them.
function Facts:cli_line(l)
  return l:find("^%s*%[ ?E%d%d ?%]") ~= nil or l:find("Such error", 1, true) ~= nil
    or l:find("^%s*For more details, please visit ") ~= nil
    or l:find("^%s*If you open a support ticket, please provide the error log found at") ~= nil
    or l:find("^%s*Failed connections: %d+") ~= nil
end
-- facts:subaction(s) -> the err-log sub-action holding the plain string s (nitro-cli prints them in English)
function Facts:subaction(s)
  for _, a in ipairs(self.subactions) do if a:find(s, 1, true) then return a end end
  -- a pasted err log may have lost its indentation: look in the text too
  return self:line("^%s*(.-" .. s:gsub("[%p]", "%%%0") .. ".*)$")
end

local function kinds_of(text)
  local k = {}
  if text:find("%[ ?E%d%d ?%]") then k.nitro_cli = true end
  if text:find("Action:", 1, true) and (text:find("Subactions:", 1, true) or text:find("Root error file:", 1, true)) then
    k.err_log = true
  end
  if text:find("%[nitro%-cli:%d+%]") or text:find("%[enc%-%x+:%d+%]") then k.nitro_log = true end
  if text:find("kms_proxy_response", 1, true) or text:find("kms_proxy_request", 1, true) then k.proxy_log = true end
  if text:find("nitro-enclaves-allocator", 1, true) or text:find("Successfully allocated Nitro Enclaves resources", 1, true)
    or text:find("Configuring the huge page memory", 1, true) or text:find("nitro_enclaves driver", 1, true) then
    k.allocator = true
  end
  if text:find("vsock-proxy", 1, true) or text:find("vsock_proxy", 1, true) or text:find("not allowed", 1, true) then
    k.vsock_proxy = true
  end
  if text:find("kmstool", 1, true) or text:find("AWS_IO_", 1, true) or text:find("AWS_ERROR_", 1, true)
    or text:find("Exception", 1, true) and text:find("[Kk][Mm][Ss]") or text:find("RecipientAttestation", 1, true) then
    k.kms = true
  end
  if text:find("linuxkit", 1, true) or text:find("docker", 1, true) or text:find("Docker", 1, true)
    or text:find("Enclave Image", 1, true) then
    k.build = true
  end
  if text:find("[init]", 1, true) or text:find("reboot: Restarting system", 1, true) or text:find("Kernel panic", 1, true)
    or text:find("%[%s*%d+%.%d+%]%s") then
    k.console = true
  end
  return k
end
M.kinds_of = kinds_of

-- facts(text [, host]) -> facts. text: anything pasted (several kinds may be mixed); host: known host state
-- ({enclaves = describe-enclaves list, allocator = {memory_mib=, cpu_count=}, hugepages_mib=, device = bool,
-- groups = {…}, container = bool}). Never raises on bad text.
function M.facts(text, hoststate)
  text = tostring(text or ""):gsub("\r\n", "\n"):gsub("\r", "\n")
  local f = setmetatable({ text = text, lines = {}, host = hoststate or {}, subactions = {}, codes = {} }, Facts)
  for l in text:gmatch("[^\n]+") do f.lines[#f.lines + 1] = l end
  f.kinds = kinds_of(text)
  if f.kinds.nitro_cli then
    local p = nitrocli.parse_errors(text)
    if p.recognised then
      f.nitro = p
      f.blocks = p.blocks
      f.root = p.root
      f.code = p.root and p.root.code
      f.nf = (p.root and p.root.facts) or {}
      for _, b in ipairs(p.blocks) do f.codes[b.code] = true end
    end
  end
  if not f.code then
    -- a block without its brackets' spacing, or quoted: take the first code seen
    local c = text:match("%[%s*(E%d%d)%s*%]")
    if c then f.code = c f.codes[c] = true end
  end
  f.nf = f.nf or {}
  -- err-log names are the time of each failure: order the blocks by them (a paste may put the E39 first)
  f.err_logs = {}
  for _, b in ipairs(f.blocks or {}) do
    local t = b.err_log_path and nitrocli.err_log_time(b.err_log_path)
    if t then f.err_logs[#f.err_logs + 1] = { path = b.err_log_path, time = t, code = b.code, block = b } end
  end
  table.sort(f.err_logs, function(a, b) return a.time < b.time end)
  local first = f.err_logs[1]
  if first and f.root and f.root.code == "E39" and first.code ~= "E39" then
    f.root, f.code, f.nf = first.block, first.code, first.block.facts or {}
    f.reordered = true
  end
  if f.kinds.err_log then
    local l = nitrocli.parse_err_log(text)
    if l.recognised then
      f.err_log = l
      f.subactions = l.subactions or {}
    end
  end
  if #f.subactions == 0 and f.kinds.err_log then
    -- keep what follows "Subactions:" up to "Root error file"
    local inside = false
    for _, l in ipairs(f.lines) do
      if l:find("Subactions:", 1, true) then inside = true
      elseif l:find("Root error file", 1, true) then inside = false
      elseif inside then f.subactions[#f.subactions + 1] = l:match("^%s*(.-)%s*$") end
    end
  end
  f.root_file = f.err_log and f.err_log.root_file or text:match("Root error file:%s*(%S+)")
  f.version = f.err_log and f.err_log.version or text:match("Version:%s*(%d+%.%d+%.%d+)")
  f.runs = f:count("Start allocating memory...")
  return f
end

-- ---- rules ------------------------------------------------------------------------------------------------------
-- A rule: { id = "e19-device-missing", area = "nitro-cli", finding = "DEVICE_MISSING", confidence = 0.9,
--           secondary = false, match = function(facts) return nil | true | { vars =, evidence =, confidence = } end }
-- A rule file returns a list of rules (or { area =, rules = { … } }); it may define its own findings with
-- nd.findings.define before returning.

local function check_rule(r, where)
  if type(r) ~= "table" then return nil, where .. ": a rule must be a table" end
  if type(r.id) ~= "string" then return nil, where .. ": a rule needs an id" end
  if type(r.match) ~= "function" then return nil, where .. ": rule " .. r.id .. " needs match = function(facts)" end
  if r.finding ~= nil and not findings.get(r.finding) then
    return nil, where .. ": rule " .. r.id .. " names unknown finding " .. tostring(r.finding)
  end
  return true
end

-- normalise(value, where) -> list of rules | nil, msg. Accepts a list of rules or { area =, rules = { … } }.
local function normalise(v, where)
  if type(v) ~= "table" then return nil, where .. ": a rule file must return a list of rules" end
  local area, list = v.area, v.rules or v
  local out = {}
  for i, r in ipairs(list) do
    local ok, err = check_rule(r, where .. " #" .. i)
    if not ok then return nil, err end
    r.area = r.area or area or where
    r.source = where
    out[#out + 1] = r
  end
  return out
end

-- load_rules(path) -> list of rules | nil, msg, "EINVAL". The file runs in a fresh environment (globals of _G
-- readable) and must return rules.
function M.load_rules(path)
  local chunk, err = loadfile(path, "t", setmetatable({}, { __index = _G }))
  if not chunk then return nil, tostring(err), "EINVAL" end
  local ok, v = pcall(chunk)
  if not ok then return nil, path .. ": " .. tostring(v), "EINVAL" end
  local list, nerr = normalise(v, path)
  if not list then return nil, nerr, "EINVAL" end
  return list
end

-- rule_dirs() -> the directories operators' rule files are read from, in order: each $NITRODIAG_PATH directory's
-- rules/ subdirectory, then /etc/nitrodiag/rules.
function M.rule_dirs()
  local dirs = {}
  local envp = os.getenv("NITRODIAG_PATH")
  if envp and envp ~= "" then
    for d in envp:gmatch("[^:]+") do dirs[#dirs + 1] = d .. "/rules" end
  end
  dirs[#dirs + 1] = "/etc/nitrodiag/rules"
  return dirs
end

local RULES, LOAD_ERRORS

-- shipped_areas() -> the names of the shipped rule modules (nd.rules.*), sorted
local function shipped()
  local names = {}
  local reg = debug.getregistry()["nd.builtin_modules"]
  for _, n in ipairs(reg and reg() or {}) do
    if n:match("^nd%.rules%.") then names[#names + 1] = n end
  end
  table.sort(names)
  return names
end

-- rules() -> all rules (shipped ones first, then operators' files), and the list of load errors (one line each;
-- a broken operator file is reported, never fatal). Loaded once.
function M.rules()
  if RULES then return RULES, LOAD_ERRORS end
  RULES, LOAD_ERRORS = {}, {}
  for _, name in ipairs(shipped()) do
    local list, err = normalise(require(name), name)
    assert(list, err) -- a broken shipped rule is a programming error
    for _, r in ipairs(list) do RULES[#RULES + 1] = r end
  end
  for _, d in ipairs(M.rule_dirs()) do
    local names = fs.is_dir(d) and fs.list(d) or {}
    for _, n in ipairs(names) do
      if n:match("%.lua$") then
        local list, err = M.load_rules(d .. "/" .. n)
        if list then
          for _, r in ipairs(list) do RULES[#RULES + 1] = r end
        else
          LOAD_ERRORS[#LOAD_ERRORS + 1] = err
        end
      end
    end
  end
  return RULES, LOAD_ERRORS
end

-- add_rules(list_or_path) -> number added | nil, msg. For `nitrodiag spec` and runbooks that test a rule.
function M.add_rules(v)
  M.rules()
  local list, err
  if type(v) == "string" then list, err = M.load_rules(v) else list, err = normalise(v, "added rules") end
  if not list then return nil, err, "EINVAL" end
  for _, r in ipairs(list) do RULES[#RULES + 1] = r end
  return #list
end

-- ---- ranking ----------------------------------------------------------------------------------------------------

-- run(text_or_facts [, {host =, rules =}]) -> result:
--   { facts, causes = { finding + {confidence, rule, area}, … } best first (one per finding code), consequences =
--     { … } (follow-up errors grouped under the root), nitro_cli = "E26" | nil (the root block's code: only what the
--     output says), implied_nitro_cli (the top cause's usual code), top = causes[1], errors = { rule errors } }
function M.run(input, opts)
  opts = opts or {}
  local f = type(input) == "table" and input or M.facts(input, opts.host)
  local rules = opts.rules or M.rules()
  local cands, errs = {}, {}
  for i, r in ipairs(rules) do
    local ok, res = pcall(r.match, f)
    if not ok then
      errs[#errs + 1] = "rule " .. r.id .. " (" .. tostring(r.source) .. "): " .. tostring(res)
    elseif res then
      if res == true then res = {} end
      local code = res.finding or r.finding
      if findings.get(code) then
        local fd = findings.make(code, res.vars, res.evidence)
        fd.confidence = res.confidence or r.confidence or 0.5
        fd.rule, fd.area, fd.order = r.id, r.area, i
        fd.secondary = res.secondary or r.secondary or false
        cands[#cands + 1] = fd
      else
        errs[#errs + 1] = "rule " .. r.id .. ": unknown finding " .. tostring(code)
      end
    end
  end
  table.sort(cands, function(a, b)
    if a.secondary ~= b.secondary then return not a.secondary end
    if a.confidence ~= b.confidence then return a.confidence > b.confidence end
    return a.order < b.order
  end)
  local causes, consequences, seen = {}, {}, {}
  local has_primary = cands[1] and not cands[1].secondary
  for _, c in ipairs(cands) do
    if not seen[c.code] then
      seen[c.code] = true
      if c.secondary and has_primary then consequences[#consequences + 1] = c else causes[#causes + 1] = c end
    end
  end
  local implied = causes[1] and causes[1].refs and causes[1].refs.nitro_cli or nil
  return { facts = f, causes = causes, consequences = consequences, top = causes[1], nitro_cli = f.code,
           implied_nitro_cli = implied, errors = errs }
end

-- nitro_error(parsed [, context]) -> finding | nil. parsed: nd.nitro.parse_errors(text) (or a record's .errors).
-- The best-ranked cause of that output (through the rules), its message prefixed with the context ("running basic");
-- follow-up blocks are in its evidence.
function M.nitro_error(parsed, context)
  if not (parsed and parsed.root) then return nil end
  local res = M.run(parsed.raw or parsed.root.headline or "")
  local top = res.top
  if not top then return nil end
  if context then top.message = context .. ": " .. top.message end
  for _, c in ipairs(res.consequences) do top.evidence[#top.evidence + 1] = "then " .. c.code .. " (a consequence, not the cause)" end
  return top
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
  -- the codes are the registry's; the message carries this log's numbers, the remediation falls back to the registry's
  local s = { finding = function(_, f)
    local e = assert(findings.get(f.code), "nd.diagnose.kms_logs: unregistered finding " .. f.code)
    f.title, f.refs = e.title, e.refs
    f.remediation = f.remediation or (e.remediation[1] and table.concat(e.remediation, "; ")) or nil
    out[#out + 1] = f
  end }
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
