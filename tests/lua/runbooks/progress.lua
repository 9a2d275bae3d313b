-- A test runbook for the terminal tests: a step with a long progress text that waits a while (several redraws of
-- the status line), and a finding with a long message and remediation (wrapped to the terminal).
return {
  description = "terminal test: long progress and findings",
  args = { { name = "seconds", type = "number", default = 2, help = "how long the step waits" } },
  deadline = 30,
  steps = {
    { name = "a step with a long wait", timeout = 10,
      run = function(s)
        s:progress("waiting on " .. string.rep("something-quite-long ", 12) .. "END")
        require("nd").sleep(s.args.seconds)
        s:finding{ code = "T_WRAP", severity = "warn",
          message = "a finding whose message is long enough to need wrapping on a narrow terminal: " ..
            string.rep("word ", 30) .. "LAST",
          remediation = "a remediation that is also long: " .. string.rep("step ", 30) .. "DONE" }
        s:finding{ code = "T_NOTE", severity = "info", message = "an info note" }
      end },
  },
}
