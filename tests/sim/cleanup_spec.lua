-- cleanup and doctor never harm the host by default (issue 12): `nitrodiag cleanup` alone terminates nothing (it
-- lists the enclaves and says how to name them); stale=true only terminates nitrodiag's own leftovers (nitrodiag-*);
-- all=true terminates every one. doctor on a pool fully held by another enclave warns and names what holds it.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local json = require "cjson"
local runbook = require "nd.runbook"

after_each(H.close_all)

local function run(name, words)
  local def = assert(runbook.load(spec.source_dir .. "/scripts/" .. name .. ".lua"))
  local args = assert(runbook.parse_args(def, words or {}))
  return runbook.execute(def, args, { quiet = true, json = true, interactive = false })
end

local function finding(res, code)
  for _, f in ipairs(res.findings) do if f.code == code then return f end end
end

describe("cleanup", function()
  it("with no selection terminates nothing and says how to name them", function()
    local s = H.activate("cpu-pool-exhausted")
    local res = run("cleanup")
    eq(res.exit_code, 0)
    eq(res.verdict, "warn")
    local f = assert(finding(res, "NOTHING_SELECTED"))
    match(f.evidence[1], '"hello%-basic" CID 16, debug mode, up %d+ s, 2 CPUs 1,3, 1024 MiB, RUNNING')
    match(f.remediation, "id=<EnclaveID>")
    eq(res.steps[2].outcome, "skipped")
    eq(#s:state().enclaves, 1, "the enclave still runs")
  end)

  it("stale=true terminates only the enclaves nitrodiag left; all=true terminates every one", function()
    local s = H.activate("healthy")
    for _, name in ipairs({ "nitrodiag-basic", "payments" }) do
      local r = H.run({ "nitro-cli", "run-enclave", "--enclave-name", name, "--cpu-count", "1", "--memory", "512",
        "--eif-path", "/home/ec2-user/hello-basic.eif", "--debug-mode" }, { cwd = s:path("/home/ec2-user") })
      eq(r.exit_code, 0, r.stderr)
    end
    local res = run("cleanup", { "stale=true" })
    eq(res.verdict, "pass", json.encode(res.findings))
    local left = s:state().enclaves
    eq(#left, 1)
    eq(left[1].name, "payments")
    res = run("cleanup", { "all=true" })
    eq(res.verdict, "pass")
    eq(#s:state().enclaves, 0)
  end)
end)

describe("doctor", function()
  local function doctor(scenario)
    local r = assert(spec.run{ spec.nitrodiag, "--json", "--sim", scenario, "doctor", timeout = 60,
      env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "", TMPDIR = spec.tmpdir() } })
    return json.decode(r.stdout), r
  end

  it("a pool fully held by another enclave is a warning naming it, not a pass", function()
    local res, r = doctor("cpu-pool-exhausted")
    eq(res.verdict, "warn", r.stderr)
    eq(r.exit_code, 0)
    local f = assert(finding(res, "ENCLAVES_HOLD_POOL"))
    match(f.message, "hold 2 of 2 CPUs")
    -- the line diag10 writes for a running enclave too (nd.checks' one describe_line)
    match(f.evidence[1], '"hello%-basic": CID 16, debug mode, up [^,]+, 2 CPUs %[1,3%], 1024 MiB, RUNNING')
    falsy(f.remediation:find("nitrodiag cleanup;", 1, true), "never a bare `nitrodiag cleanup`")
    match(f.remediation, "cleanup id=<its EnclaveID: i%-0123456789abcdef0%-enc")
  end)

  it("a healthy host with nothing running passes", function()
    local res = doctor("healthy")
    eq(res.verdict, "pass", json.encode(res.findings))
  end)
end)
