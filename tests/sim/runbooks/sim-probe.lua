-- A small runbook used by tests/sim/runbook_spec.lua: it only uses what a real runbook uses (nd.proc, nd.host,
-- nd.fs) and so shows that runbooks run unchanged on the simulated host.
local proc = require "nd.proc"
local host = require "nd.host"
local fs = require "nd.fs"

return {
  name = "sim-probe",
  description = "Probe the (simulated) Nitro host: allocator.yaml, describe-enclaves, one run-enclave",
  args = { { name = "memory", type = "number", default = 512, help = "MiB for run-enclave" } },
  deadline = 60,
  steps = {
    { name = "allocator", timeout = 10, run = function(s)
      local text = fs.read(host.root() .. "/etc/nitro_enclaves/allocator.yaml")
      if not text then return s:fail("no allocator.yaml under " .. host.root()) end
      s.data.memory_mib = tonumber(text:match("\nmemory_mib:%s*(%d+)"))
      s:log("memory_mib=" .. tostring(s.data.memory_mib))
    end },
    { name = "run", timeout = 20, run = function(s)
      local eif = host.root() .. "/home/ec2-user/data-processing.eif"
      local r = assert(proc.run{ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", tostring(s.args.memory),
        "--eif-path", eif, timeout = 15 })
      s:log(r.stderr)
      local code = r.stderr:match("^%[ (E%d%d) %]") or r.stderr:match("\n%[ (E%d%d) %]")
      if code then
        s:finding{ code = code, severity = "fail", message = r.stderr:match("%[ E%d%d %] ([^\n]*)"),
          evidence = { r.stderr:match("^[^\n]*") } }
        return s:fail(code)
      end
      s:ok("enclave started")
    end },
  },
}
