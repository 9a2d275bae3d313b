-- triage: point it at (or paste) anything an enclave problem leaves behind — nitro-cli output, an err*.log, the
-- enclave console, journalctl of nitro-enclaves-allocator.service, vsock-proxy output, KMS/kmstool errors,
-- docker/linuxkit build output, KMS proxy logs, or a whole run log holding several of them — and get the root cause
-- and its fix. The facts are extracted and the cause rules ranked by nd.diagnose (rules in lua/nd/rules/, plus
-- operators' rule files); every cause is a code of nd.findings. `nitrodiag explain` goes deeper into one error code.
local kmslog = require "nd.kmslog"
local fs = require "nd.fs"
local diagnose = require "nd.diagnose"
local findings = require "nd.findings"
local textscan = require "nd.textscan"

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

-- reduce(text) -> the lines holding a trigger word, each with the 8 lines after it (error blocks span lines), in
-- order; one pass in C (nd.textscan), so a log of hundreds of megabytes stays fast.
local function reduce(text)
  local starts = assert(textscan.lines_with(text, TRIGGERS))
  local out, upto = {}, 0
  for _, s in ipairs(starts) do
    if s > upto then
      local e = s
      for _ = 1, 9 do
        local n = text:find("\n", e, true)
        if not n then e = #text + 1 break end
        e = n + 1
      end
      out[#out + 1] = text:sub(math.max(s, upto + 1), e - 1)
      upto = e - 1
    end
  end
  return table.concat(out)
end

return {
  description = "Root cause and fix from nitro-cli output, err logs, console, allocator journal, vsock-proxy, KMS or build output (file or -)",
  categories = { "triage" },
  args = {
    { name = "input", type = "string", positional = 1, required = true, help = "a file, or - for stdin" },
    { name = "rules", type = "string", help = "an extra rule file to load first (to try a rule: docs/diagnosis.md)" },
    { name = "host", type = "boolean", default = false,
      help = "also read this host's state (describe-enclaves, allocator.yaml, hugepages, the device, group ne, container)" },
    { name = "all", type = "boolean", default = false, help = "list every candidate cause, not only the best ones" },
  },
  deadline = 60,
  steps = {
    { name = "read", timeout = 30, required = true,
      run = function(s)
        local text, err = read_input(s.args.input)
        -- input that cannot be triaged is a usage error (exit 2) with one line that says why
        if not text then s:usage(err) end
        local ok, why = check_text(text, s.args.input == "-" and "stdin" or s.args.input)
        if not ok then s:usage(why) end
        s.data.text = text
        s.data.view = #text > BIG and reduce(text) or text
        s:ok(string.format("%d bytes%s", #text, #text > BIG and string.format(" (%d bytes of it around errors)", #s.data.view) or ""))
      end },

    { name = "host state", timeout = 20,
      when = function(args) return args.host end,
      run = function(s)
        -- what the rules may weigh besides the text: facts only, read-only, each one optional
        local uv = require "luv"
        local host = require "nd.host"
        local h = {}
        local list, err = require("nd.nitro").describe_enclaves({ timeout = 15 })
        if list then h.enclaves = list else s:log("describe-enclaves: " .. tostring(err)) end
        local cfg = require("nd.allocator").load()
        if cfg then h.allocator = cfg end
        local mi = fs.read(host.path("/proc/meminfo")) or ""
        local total, size = tonumber(mi:match("HugePages_Total:%s*(%d+)")), tonumber(mi:match("Hugepagesize:%s*(%d+)"))
        if total and size then h.hugepages_mib = total * size // 1024 end
        h.device = uv.fs_stat(host.path("/dev/nitro_enclaves")) ~= nil
        local grp = fs.read(host.path("/etc/group")) or ""
        local me = uv.os_get_passwd()
        local members = grp:match("\nne:[^:]*:%d+:([^\n]*)") or grp:match("^ne:[^:]*:%d+:([^\n]*)")
        if me and members then
          h.in_ne_group = me.uid == 0 or ("," .. members .. ","):find("," .. me.username .. ",", 1, true) ~= nil
        end
        h.container = fs.exists(host.path("/.dockerenv")) or fs.exists(host.path("/run/.containerenv"))
          or ((fs.read(host.path("/proc/1/cgroup")) or ""):find("kubepods", 1, true) ~= nil)
        s.data.host = h
        s:ok(string.format("%s enclave(s), hugepages %s MiB, device %s, group ne %s, container %s",
          h.enclaves and #h.enclaves or "?", tostring(h.hugepages_mib or "?"), h.device and "present" or "missing",
          h.in_ne_group == nil and "?" or (h.in_ne_group and "yes" or "no"), h.container and "yes" or "no"))
      end },

    { name = "diagnose", timeout = 30,
      run = function(s)
        if s.args.rules then
          local n, err = diagnose.add_rules(s.args.rules)
          if not n then s:fail("rules=" .. s.args.rules .. ": " .. err) return end
          s:log(string.format("%d rule(s) from %s", n, s.args.rules))
        end
        local res = diagnose.run(s.data.view, { host = s.data.host })
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
