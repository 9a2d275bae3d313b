-- triage: point it at (or paste) anything an enclave problem leaves behind — nitro-cli output, an err*.log, an
-- enclave console log, KMS proxy logs, or a whole run log holding several of them — and get the root cause and the
-- fix. It recognises each kind in the text and hands it to the analysis for that kind (nd.diagnose, nd.console,
-- nd.nitro's err-log parser, nd.kmslog); `nitrodiag explain` goes deeper into one error code.
local nitro = require "nd.nitro"
local kmslog = require "nd.kmslog"
local fs = require "nd.fs"
local host = require "nd.host"
local diagnose = require "nd.diagnose"
local console = require "nd.console"

local MAX_INPUT = 64 * 1024 * 1024

local function read_input(path)
  if path == "-" then
    local data = io.stdin:read(MAX_INPUT + 1) or ""
    if #data > MAX_INPUT then return nil, "stdin: more than 64 MiB" end
    return data
  end
  local st = require("luv").fs_stat(path)
  if not st then return nil, path .. ": no such file" end
  if st.type ~= "file" then return nil, path .. ": not a regular file" end
  if st.size > MAX_INPUT then return nil, path .. ": larger than 64 MiB (use nitrodiag kms-logs for big proxy logs)" end
  return fs.read(path)
end

-- Which kinds of text are in the input (several may be, in a run log).
local function kinds_of(text)
  local k = {}
  if text:find("%[ E%d%d %]") then k.nitro_cli = true end
  if text:find("Action:", 1, true) and text:find("Root error file:", 1, true) then k.err_log = true end
  if text:find("kms_proxy_response", 1, true) or text:find("kms_proxy_request", 1, true) then k.proxy_log = true end
  if console.looks_like(text) then k.console = true end
  return k
end

return {
  description = "Root cause and fix from any nitro-cli output, err log, enclave console or KMS proxy log (file or -)",
  categories = { "triage" },
  args = {
    { name = "input", type = "string", positional = 1, required = true, help = "a file, or - for stdin" },
    { name = "kind", type = "string", default = "auto", choices = { "auto", "nitro-cli", "err-log", "console", "proxy-log" },
      help = "what the input is (default: recognise it)" },
  },
  deadline = 60,
  steps = {
    { name = "read", timeout = 30, required = true,
      run = function(s)
        local text, err = read_input(s.args.input)
        if not text then s:usage(err) end
        s.data.text = text
        local kinds = s.args.kind == "auto" and kinds_of(text) or { [s.args.kind:gsub("%-", "_")] = true }
        s.data.kinds = kinds
        local names = {}
        for k in pairs(kinds) do names[#names + 1] = k:gsub("_", "-") end
        table.sort(names)
        if #names == 0 then
          s:finding{ code = "UNRECOGNISED", severity = "fail",
            message = "unrecognised input: no nitro-cli error block, err log, enclave console or KMS proxy log in it",
            evidence = { (text:match("^[^\n]*") or ""):sub(1, 200) },
            remediation = "give the stderr of the nitro-cli command, a /var/log/nitro_enclaves/err*.log, a console log or proxy logs" }
          return
        end
        s:ok(string.format("%d bytes: %s", #text, table.concat(names, ", ")))
      end },

    { name = "nitro-cli errors", timeout = 10, when = function() return true end,
      run = function(s)
        if not s.data.kinds.nitro_cli then s:skip("no nitro-cli error block") end
        local parsed = nitro.parse_errors(s.data.text)
        if not parsed.recognised or not parsed.root then s:fail(parsed.reason or "unrecognised nitro-cli output") return end
        s:finding(diagnose.nitro_error(parsed, nil))
        for _, b in ipairs(parsed.blocks) do
          if b ~= parsed.root and b.secondary then
            s:finding{ code = b.code, severity = "info",
              message = b.code .. " follows " .. parsed.root.code .. ": nitro-cli could not reach the enclave process it had just lost; fix " ..
                parsed.root.code .. " and it goes away" }
          end
        end
        if parsed.root.err_log_path then
          local log = nitro.read_err_log(parsed.root.err_log_path)
          if log and log.recognised then
            s:log(string.format("%s: %s, failed at %s:%s (nitro-cli %s)", parsed.root.err_log_path, log.action or "?",
              log.root_file or "?", tostring(log.root_line), log.version or "?"))
          end
        end
      end },

    { name = "err log", timeout = 10,
      run = function(s)
        if not s.data.kinds.err_log then s:skip("no err log") end
        local log = nitro.parse_err_log(s.data.text)
        if not log.recognised then s:fail(log.reason or "unrecognised err log") return end
        local ev = { "Action: " .. tostring(log.action) }
        for _, sub in ipairs(log.subactions or {}) do ev[#ev + 1] = "  " .. sub end
        ev[#ev + 1] = string.format("Root error: %s:%s (nitro-cli %s)", log.root_file or "?", tostring(log.root_line), log.version or "?")
        s:finding{ code = "ERR_LOG", severity = "fail",
          message = string.format("nitro-cli failed in %s: %s", tostring(log.action),
            (log.subactions and log.subactions[#log.subactions]) or "see the subactions"),
          evidence = ev,
          remediation = "the err log's name is the time of the failure: the `[ Exx ]` block nitro-cli printed then names " ..
            "the error code (nitrodiag explain Exx); attach this file to a support ticket" }
      end },

    { name = "enclave console", timeout = 10,
      run = function(s)
        if not s.data.kinds.console then s:skip("no enclave console output") end
        local lines = {}
        for l in s.data.text:gmatch("[^\n]+") do lines[#lines + 1] = l end
        local res = console.analyse(lines, { name = "console" })
        for _, f in ipairs(res.findings) do s:finding(f) end
        if res.verdict == "ok" then
          s:ok(res.facts.init and ("the enclave started its command" .. (res.facts.launched and (": " .. res.facts.launched) or ""))
            or "console output without a problem I know")
        end
      end },

    { name = "KMS proxy log", timeout = 30,
      run = function(s)
        if not s.data.kinds.proxy_log then s:skip("no KMS proxy log lines") end
        local sc <close> = assert(kmslog.new({ keep = 1000 }))
        sc:feed(s.data.text)
        sc:finish()
        local res = sc:result()
        res.sources = { { path = s.args.input } }
        local findings = diagnose.kms_logs(res)
        for _, f in ipairs(findings) do s:finding(f) end
        if #findings == 0 then
          s:ok(string.format("%d responses, no errors", res.stats.matched_responses or 0))
        else
          s:log("for request ids and counters: nitrodiag kms-logs " .. s.args.input .. " mode=summary")
        end
      end },
  },
}
