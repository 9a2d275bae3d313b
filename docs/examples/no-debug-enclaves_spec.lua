-- The worked example's spec: run it with `nitrodiag spec docs/examples/no-debug-enclaves_spec.lua`.
local json = require "nd.json"

local RUNBOOK = spec.source_dir .. "/docs/examples/no-debug-enclaves.lua"

local function run(scenario, ...)
  local r = assert(spec.run{ spec.nitrodiag, "--sim", scenario, "--json", "run", RUNBOOK, ... })
  return json.decode(r.stdout), r
end

describe("no-debug-enclaves", function()
  it("passes on a healthy host (no enclave running)", function()
    local res, r = run("healthy")
    eq(res.verdict, "pass")
    eq(r.exit_code, 0)
  end)
  it("fails on the stale debug-mode enclave of cpu-pool-exhausted", function()
    local res, r = run("cpu-pool-exhausted")
    eq(r.exit_code, 1)
    eq(res.findings[1].code, "DEBUG_ENCLAVE")
    match(res.findings[1].evidence[1], "hello%-basic, CID 16")
  end)
  it("accepts an allowed name", function()
    local res = run("cpu-pool-exhausted", "allow=hello-basic")
    eq(res.verdict, "pass")
  end)
end)
