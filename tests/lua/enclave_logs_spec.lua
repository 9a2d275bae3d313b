-- The enclave log channel reaches the bundle: diag10 on a simulated host where nitrodiag-logd has written enclave
-- logs (sim/scenarios/enclave-logs.lua) collects them as enclave_logs/<enclave-id>.log.
local json = require "nd.json"
local fs = require "nd.fs"

describe("enclave logs in the bundle", function()
  it("diag10 collects /var/log/nitrodiag/enclaves/*.log", function()
    local dir = spec.tmpdir()
    local r = assert(spec.run{ spec.nitrodiag, "--sim", "enclave-logs", "--json", "--out", dir, "diag10", "run_seconds=2",
      "build=false", "runs=vsock", env = { PATH = os.getenv("PATH"), HOME = "/root", NITRODIAG_PATH = "" }, timeout = 120 })
    local res = json.decode(r.stdout)
    truthy(res and res.bundle and fs.exists(res.bundle), "bundle written: " .. r.stderr .. r.stdout:sub(1, 2000))
    local b = assert(require("nd.bundle").read(res.bundle))
    local member
    for _, m in ipairs(b.members) do
      if m.name:match("/enclave_logs/i%-0123456789abcdef0%-enc0123456789abcd%.log$") then member = m end
    end
    truthy(member, "the enclave log is in the bundle")
    eq(#b.problems, 0)
  end, 120)
end)
