-- man-sections.lua — the runbook, scenario and argument sections of nitrodiag(1), written as a help2man include
-- file from the same tables the program reads at run time (runbook definitions, the simulator's scenarios), so the
-- man page cannot drift from `nitrodiag list`, `nitrodiag help RUNBOOK` and `nitrodiag sim`.
-- A runbook, run by the build: `nitrodiag -q run packaging/man-sections.lua out=FILE`.
local runbook = require "nd.runbook"
local fs = require "nd.fs"

local function roff(s)
  s = tostring(s or ""):gsub("\\", "\\e"):gsub("\n", " ")
  return (s:gsub("^([.'])", "\\&%1"):gsub("%-", "\\-"))
end

-- sections() -> the include file's text
local function sections()
  local out = {}
  local function w(s) out[#out + 1] = s end

  w("[RUNBOOKS]")
  w("Runbooks are Lua files found on the search path (see DESCRIPTION); these ship with this version.")
  w("`nitrodiag help RUNBOOK` shows the same arguments.")
  for _, e in ipairs(runbook.list()) do
    w(".TP")
    w("\\fB" .. roff(e.name) .. "\\fR")
    w(roff(e.description))
    local def = runbook.load(e.path)
    if def and def.args and #def.args > 0 then
      w(".RS")
      for _, a in ipairs(def.args) do
        local d = ""
        if a.default ~= nil then d = " (default " .. tostring(a.default) .. ")" elseif a.required then d = " (required)" end
        w(".TP")
        w("\\fI" .. roff(a.name) .. "=\\fR" .. roff(a.type or ""))
        w(roff((a.help or "") .. d))
      end
      w(".RE")
    end
  end

  local ok, sim = pcall(require, "nd.sim")
  if ok and sim and sim.scenarios then
    w("[SIMULATOR SCENARIOS]")
    w("Names accepted by \\fB\\-\\-sim\\fR (a path to a scenario file works too); `nitrodiag sim NAME` prints one.")
    for _, sc in ipairs(sim.scenarios()) do
      w(".TP")
      w("\\fB" .. roff(sc.name) .. "\\fR")
      w(roff(sc.description))
    end
  end

  w("[FILES]")
  w(".TP")
  w("\\fI/etc/nitrodiag/runbooks/\\fR")
  w("site runbooks; a file here overrides the shipped runbook of the same name")
  w(".TP")
  w("\\fI" .. roff(require("nd.host").share_dir()) .. "/\\fR")
  w("shipped runbooks, simulator scenarios and the test-enclave image context")
  w("[SEE ALSO]")
  w("\\fBnitrodiag\\-kms\\-proxy\\fR(1), \\fBnitro\\-cli\\fR(1)")
  return table.concat(out, "\n") .. "\n"
end

return {
  description = "Write the RUNBOOKS, SIMULATOR SCENARIOS and FILES sections of nitrodiag(1) (a help2man include)",
  args = { { name = "out", type = "string", required = true, help = "the include file to write" } },
  steps = {
    { name = "write", timeout = 30,
      run = function(s)
        local text = sections()
        local ok, err = fs.write(s.args.out, text)
        if not ok then s:fail(tostring(err)) return end
        s:ok(s.args.out)
      end },
  },
}
