-- findings: the registry of findings (nd.findings) and the cause rules triage loads — the shipped ones, then the
-- operators' rule files on $NITRODIAG_PATH/rules and /etc/nitrodiag/rules (docs/diagnosis.md). With a code, that
-- finding in full (title, message template, remediation, references, the rules that name it). A rule file that
-- does not load is a failed step: an operator sees it here before triage silently ignores it.
local findings = require "nd.findings"
local diagnose = require "nd.diagnose"

local lines = {}

return {
  description = "List the finding codes and the cause rules loaded (shipped and operators'), or show one code",
  categories = { "triage" },
  args = {
    { name = "code", type = "string", positional = 1, help = "a finding code to show in full (e.g. CPU_POOL_NOT_RELEASED)" },
  },
  deadline = 20,
  steps = {
    { name = "rules", timeout = 10,
      run = function(s)
        local rules, errs = diagnose.rules()
        local by_source, names = {}, {}
        for _, r in ipairs(rules) do
          if not by_source[r.source] then by_source[r.source] = 0 names[#names + 1] = r.source end
          by_source[r.source] = by_source[r.source] + 1
        end
        s.data.rules = rules
        for _, e in ipairs(errs) do
          s:finding{ code = "RULE_FILE_BROKEN", severity = "fail", message = e,
                     remediation = "fix or remove the file; triage skips it meanwhile" }
        end
        local parts = {}
        for _, n in ipairs(names) do parts[#parts + 1] = string.format("%s (%d)", n, by_source[n]) end
        s:log("rule files: " .. table.concat(parts, ", "))
        if #errs == 0 then s:ok(string.format("%d rules from %d files", #rules, #names)) end
      end },
    { name = "registry", timeout = 10,
      run = function(s)
        local code = s.args.code
        if code then
          local e = findings.get(code)
          if not e then
            s:finding{ code = "BAD_INPUT", severity = "fail", message = code .. " is not a finding code",
                       remediation = "nitrodiag findings (lists them)" }
            return
          end
          lines[#lines + 1] = string.format("%s  [%s]  %s", e.code, e.severity, e.title)
          lines[#lines + 1] = "  message: " .. e.message
          for _, r in ipairs(e.remediation) do lines[#lines + 1] = "  fix: " .. r end
          if e.refs.nitro_cli then lines[#lines + 1] = "  nitro-cli: " .. e.refs.nitro_cli end
          if e.refs.doc then lines[#lines + 1] = "  doc: " .. e.refs.doc end
          if e.refs.source then lines[#lines + 1] = "  source: " .. e.refs.source end
          for _, i in ipairs(e.refs.issues) do lines[#lines + 1] = "  thread: " .. i end
          for _, r in ipairs(s.data.rules or {}) do
            if r.finding == code then lines[#lines + 1] = string.format("  rule: %s (%s)", r.id, r.source) end
          end
          s:output(e)
          s:ok(e.code .. " " .. e.title)
          return
        end
        local list = findings.list()
        local out = {}
        for _, e in ipairs(list) do
          if not e.code:match("^E%d%d$") then
            lines[#lines + 1] = string.format("%-34s %-4s %s", e.code, e.severity, e.title)
            out[#out + 1] = { code = e.code, severity = e.severity, title = e.title, nitro_cli = e.refs.nitro_cli }
          end
        end
        lines[#lines + 1] = "(and nitro-cli's own codes E00–E60: nitrodiag explain Exx)"
        s:output(out)
        s:ok(string.format("%d finding codes", #list))
      end },
  },
  report = function() return #lines > 0 and table.concat(lines, "\n") or nil end,
}
