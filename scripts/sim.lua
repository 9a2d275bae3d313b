-- sim: the simulated Nitro host's scenarios — which there are, what each one shows, and where its file is, so an
-- operator can copy one, edit it, and run any runbook against it (`nitrodiag --sim=./my-scenario.lua diag10`).
local sim = require "nd.sim"

return {
  description = "List the simulated-host scenarios (for --sim) with what each shows and where its file is",
  categories = { "meta", "simulator" },
  args = {
    { name = "name", type = "string", positional = 1, help = "show one scenario's file instead of the list" },
  },
  deadline = 10,
  steps = {
    { name = "scenarios", timeout = 5,
      run = function(s)
        local list = sim.scenarios()
        if s.args.name then
          for _, sc in ipairs(list) do
            if sc.name == s.args.name then
              local text = require("nd.fs").read(sc.path)
              if not s.json then io.stdout:write(text or "") end
              s:output(sc)
              s:ok(sc.path)
              return
            end
          end
          s:fail("unknown scenario: " .. s.args.name)
          return
        end
        if not s.json then
          for _, sc in ipairs(list) do
            io.stdout:write(string.format("%-24s %s\n%-24s   %s\n", sc.name, sc.description or "", "", sc.path))
          end
        end
        s:output(list)
        s:ok(#list .. " scenarios")
      end },
  },
}
