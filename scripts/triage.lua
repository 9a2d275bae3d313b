-- triage: point it at (or paste) anything an enclave problem leaves behind — nitro-cli output, an err*.log, the
-- enclave console, journalctl of nitro-enclaves-allocator.service, vsock-proxy output, KMS/kmstool errors,
-- docker/linuxkit build output, KMS proxy logs, or a whole run log holding several of them — and get the root cause
-- and its fix. The facts are extracted and the cause rules ranked by nd.diagnose (rules in lua/nd/rules/, plus
-- operators' rule files); every cause is a code of nd.findings. `nitrodiag explain` goes deeper into one error code.
local kmslog = require "nd.kmslog"
local fs = require "nd.fs"
local diagnose = require "nd.diagnose"
local findings = require "nd.findings"

local MAX_INPUT = 256 * 1024 * 1024
local BIG = 2 * 1024 * 1024 -- above this, only the lines around what rules look for are kept

-- check_text(data) -> true | nil, reason: refuses what is not text (NUL bytes or mostly control bytes in the
-- first 64 KiB). Invalid UTF-8 is fine: logs mix encodings.
local function check_text(data, name)
  if #data == 0 then return nil, name .. ": empty input (nothing to triage)" end
  local head = data:sub(1, 65536)
  local _, nul = head:gsub("%z", "")
  local _, ctl = head:gsub("[\1-\8\14-\26\28-\31\127]", "")
  if (nul > 0 and nul + ctl > #head // 50) or nul + ctl > #head // 10 then
    return nil, string.format("%s: binary data, not a log (%d NUL and %d control bytes in the first %d) — give the text output of the command",
      name, nul, ctl, #head)
  end
  return true
end

local function read_input(path)
  if path == "-" then
    local data = io.stdin:read(MAX_INPUT + 1) or ""
    if #data > MAX_INPUT then return nil, "stdin: more than 256 MiB; give the relevant part (e.g. tail -c 64M)" end
    return data
  end
  local st = require("luv").fs_stat(path)
  if not st then return nil, path .. ": no such file" end
  if st.type ~= "file" then return nil, path .. ": not a regular file" end
  if st.size > MAX_INPUT then
    return nil, string.format("%s: %d MiB is more than the 256 MiB triage reads; give the relevant part (e.g. tail -c 64M %s)",
      path, st.size // (1024 * 1024), path)
  end
  return fs.read(path)
end

-- Words that start every line a rule looks at (plain finds: fast on big logs).
local TRIGGERS = { "[ E", "Error", "error", "ERROR", "Failed", "failed", "FAILED", "fail", "panic", "Panic", "denied",
  "Denied", "not allowed", "Could not", "reboot:", "[init]", "AWS_IO_", "AWS_ERROR_", "Exception", "Action:",
  "Subactions", "Root error", "Version:", "Start allocating", "allocated", "Reserve", "huge", "Huge", "linuxkit",
  "bind", "DNS", "refused", "Refused", "expired", "certificate", "NITRO_CLI", "nitro_enclaves", "allocator",
  "Vsock", "vsock-proxy", "kmstool", "Throttl", "CID", "Kernel", "debug", "Attestation", "0000000000000000" }

-- reduce(text) -> the lines around trigger words, in order (each with the 8 lines after it, for error blocks).
local function reduce(text)
  local keep = {}
  for _, w in ipairs(TRIGGERS) do
    local init = 1
    while true do
      local p = text:find(w, init, true)
      if not p then break end
      local back = text:sub(math.max(1, p - 4096), p)
      local s = p - (#back - (back:match(".*\n()") or 1))
      keep[s] = true
      local e = text:find("\n", p, true) or #text
      init = e + 1
    end
  end
  local starts = {}
  for s in pairs(keep) do starts[#starts + 1] = s end
  table.sort(starts)
  local out, upto = {}, 0
  for _, s in ipairs(starts) do
    if s > upto then
      local e = s
      for _ = 1, 9 do
        local n = text:find("\n", e, true)
        if not n then e = #text break end
        e = n + 1
      end
      local from = math.max(s, upto + 1)
      out[#out + 1] = text:sub(from, e - 1)
      upto = e - 1
    end
  end
  return table.concat(out, out[1] and not out[1]:match("\n$") and "\n" or "")
end

return {
  description = "Root cause and fix from nitro-cli output, err logs, console, allocator journal, vsock-proxy, KMS or build output (file or -)",
  categories = { "triage" },
  args = {
    { name = "input", type = "string", positional = 1, required = true, help = "a file, or - for stdin" },
    { name = "rules", type = "string", help = "an extra rule file to load first (to try a rule: docs/diagnosis.md)" },
    { name = "all", type = "boolean", default = false, help = "list every candidate cause, not only the best ones" },
  },
  deadline = 60,
  steps = {
    { name = "read", timeout = 30, required = true,
      run = function(s)
        local text, err = read_input(s.args.input)
        if not text then
          s:finding(findings.make("BAD_INPUT", { detail = err }))
          return
        end
        local ok, why = check_text(text, s.args.input == "-" and "stdin" or s.args.input)
        if not ok then
          s:finding(findings.make("BAD_INPUT", { detail = why }))
          return
        end
        s.data.text = text
        s.data.view = #text > BIG and reduce(text) or text
        s:ok(string.format("%d bytes%s", #text, #text > BIG and string.format(" (%d bytes of it around errors)", #s.data.view) or ""))
      end },

    { name = "diagnose", timeout = 30,
      run = function(s)
        if s.args.rules then
          local n, err = diagnose.add_rules(s.args.rules)
          if not n then s:fail("rules=" .. s.args.rules .. ": " .. err) return end
          s:log(string.format("%d rule(s) from %s", n, s.args.rules))
        end
        local res = diagnose.run(s.data.view)
        local _, load_errors = diagnose.rules()
        for _, e in ipairs(load_errors) do s:log("rule file not loaded: " .. e) end
        for _, e in ipairs(res.errors) do s:log(e) end
        s.data.kinds = res.facts.kinds
        local names = {}
        for k in pairs(res.facts.kinds) do names[#names + 1] = (k:gsub("_", "-")) end
        table.sort(names)
        if not res.top then
          if #names == 0 then
            s:finding(findings.make("UNRECOGNISED", {
              detail = "no nitro-cli error, err log, console, allocator, vsock-proxy, KMS or build output in it" },
              { (s.data.text:match("^[^\n]*") or ""):sub(1, 200) }))
          elseif not s.data.kinds.proxy_log then
            s:ok("read as " .. table.concat(names, ", ") .. ": no problem I know of")
          end
          return
        end
        local top = res.top
        top.message = top.message .. (res.nitro_cli and top.code ~= res.nitro_cli and (" (nitro-cli " .. res.nitro_cli .. ")") or "")
        s:finding(top)
        for i = 2, #res.causes do
          local c = res.causes[i]
          if s.args.all or c.confidence >= 0.5 and c.confidence >= top.confidence - 0.3 then
            s:finding{ code = c.code, severity = "info", message = "also possible: " .. c.message, evidence = c.evidence,
                       remediation = c.remediation }
          end
        end
        for _, c in ipairs(res.consequences) do
          s:finding{ code = c.code, severity = "info", message = "consequence of " .. top.code .. ", not a cause: " .. c.message,
                     evidence = c.evidence }
        end
        s:log("read as " .. table.concat(names, ", ") .. "; best cause by rule " .. top.rule .. " (" .. top.area ..
          string.format(", confidence %.2f)", top.confidence))
        s:output{ cause = top.code, nitro_cli = res.nitro_cli, confidence = top.confidence, rule = top.rule, kinds = names }
      end },

    { name = "KMS proxy log", timeout = 30,
      run = function(s)
        if not (s.data.kinds and s.data.kinds.proxy_log) then s:skip("no KMS proxy log lines") end
        local sc <close> = assert(kmslog.new({ keep = 1000 }))
        sc:feed(s.data.text)
        sc:finish()
        local res = sc:result()
        res.sources = { { path = s.args.input } }
        local fs_ = diagnose.kms_logs(res)
        for _, f in ipairs(fs_) do s:finding(f) end
        if #fs_ == 0 then
          s:ok(string.format("%d responses, no errors", res.stats.matched_responses or 0))
        else
          s:log("for request ids and counters: nitrodiag kms-logs " .. s.args.input .. " mode=summary")
        end
      end },
  },
}
