-- Runbooks run unchanged against the simulated host through the real CLI (`nitrodiag --sim SCENARIO run FILE`):
-- the engine activates the scenario, the runbook's nitro-cli calls reach the stand-in, and the host is removed after.
local fs = require "nd.fs"
local json = require "cjson"

local RB = spec.source_dir .. "/tests/sim/runbooks/sim-probe.lua"

local function nitrodiag(args)
  local argv = { spec.nitrodiag }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "",
    ND_SOURCE_DIR = spec.source_dir, TMPDIR = spec.tmpdir() }
  argv.timeout = 60
  local r = assert(spec.run(argv))
  return r, argv.env.TMPDIR
end

describe("--sim", function()
  it("e26-small-memory: the runbook's run-enclave fails with E26 and the host is gone afterwards", function()
    local r, tmp = nitrodiag({ "--json", "--sim", "e26-small-memory", "run", RB })
    eq(r.exit_code, 1, r.stderr)
    local res = json.decode(r.stdout)
    eq(res.sim, "e26-small-memory")
    eq(res.steps[1].outcome, "ok")
    eq(res.steps[2].outcome, "fail")
    eq(res.findings[1].code, "E26")
    match(res.findings[1].message, "the minimum memory should be 2148 MB")
    eq(fs.list(tmp), {}, "no simulated host left in TMPDIR")
  end)
  it("a scenario given by path (--sim=FILE) with enough memory: the run passes", function()
    local dir = spec.tmpdir()
    local text = assert(fs.read(spec.source_dir .. "/sim/scenarios/e26-small-memory.lua"))
    fs.write(dir .. "/mine.lua", text)
    local r = nitrodiag({ "--json", "--sim=" .. dir .. "/mine.lua", "run", RB, "memory=2148" })
    eq(r.exit_code, 0, r.stderr .. r.stdout)
    eq(json.decode(r.stdout).verdict, "pass")
  end)
  it("the vsock-ping runbook gets pong from the simulated vsock enclave (console-not-debug runs one at CID 16)", function()
    if not fs.exists(spec.source_dir .. "/scripts/vsock-ping.lua") then return end
    local r = nitrodiag({ "--json", "--sim", "console-not-debug", "run", spec.source_dir .. "/scripts/vsock-ping.lua", "16" })
    eq(r.exit_code, 0, r.stderr .. r.stdout)
    local res = json.decode(r.stdout)
    eq(res.verdict, "pass")
    match(res.steps[1].message, "vsock:16:5000 answered pong")
  end)
end)
