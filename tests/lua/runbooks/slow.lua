-- A test runbook for the engine specs: a step that waits on a process, one that raises, one that warns.
return {
  description = "engine test: timeouts, errors, findings",
  args = {
    { name = "sleep", type = "number", default = 100, help = "seconds the first step's command sleeps" },
    { name = "step_timeout", type = "number", default = 1, help = "first step's timeout" },
    { name = "mode", type = "string", default = "all", choices = { "all", "timeout" }, help = "which steps" },
  },
  deadline = 60,
  steps = {
    { name = "spawn sleep", timeout = tonumber(os.getenv("ND_TEST_STEP_TIMEOUT")) or 1,
      run = function(s)
        local proc = require "nd.proc"
        s:progress("waiting for sleep " .. s.args.sleep)
        local pidfile = os.getenv("ND_TEST_PIDFILE")
        local r = proc.run{ "sh", "-c", (pidfile and ("echo $$ > " .. pidfile .. "; ") or "") .. "exec sleep " .. s.args.sleep }
        s:ok("slept: " .. r.status)
      end },
    { name = "raises", when = function(a) return a.mode == "all" end,
      run = function() error("boom from a step") end },
    { name = "warns", when = function(a) return a.mode == "all" end,
      run = function(s)
        s:finding{ code = "T01", severity = "warn", message = "a warning finding", evidence = { "line 1" },
                   remediation = "do something" }
      end },
    { name = "cleanup", always = true, timeout = 5,
      run = function(s) s:ok("cleaned up") end },
  },
}
