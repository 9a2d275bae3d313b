-- diag10 is safe and right by default (issue 12): it never terminates an enclave it did not start unless told to,
-- says what the running ones are and whether they are in the way, always terminates its own test enclaves (by ID),
-- predicts E26/E27 once per cause and does not start a run it predicts to fail, rejects unknown run names, runs the
-- busybox smoke image when asked, and explains basic_rc=-1. Through the real CLI on the simulated host, plus
-- in-process runs whose simulated host the spec can inspect afterwards.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local fs = require "nd.fs"
local json = require "cjson"
local runbook = require "nd.runbook"

after_each(H.close_all)

local DIAG10 = spec.source_dir .. "/scripts/diag10.lua"

local function nitrodiag(args, opts)
  local argv = { spec.nitrodiag }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "",
    ND_SOURCE_DIR = spec.source_dir, TMPDIR = spec.tmpdir() }
  argv.cwd = (opts and opts.cwd) or spec.tmpdir()
  argv.timeout = 120
  return assert(spec.run(argv)), argv.cwd
end

-- A scenario file derived from a shipped one, with its enclaves replaced.
local function scenario(base, enclaves, extra)
  local sc = dofile(spec.source_dir .. "/sim/scenarios/" .. base .. ".lua")
  sc.enclaves = enclaves
  for k, v in pairs(extra or {}) do sc[k] = v end
  local path = spec.tmpdir() .. "/" .. base .. "-variant.lua"
  local function ser(v, ind)
    if type(v) == "string" then return string.format("%q", v) end
    if type(v) ~= "table" then return tostring(v) end
    local out = {}
    for k, x in pairs(v) do
      local key = type(k) == "number" and "" or ("[" .. string.format("%q", k) .. "] = ")
      out[#out + 1] = ind .. "  " .. key .. ser(x, ind .. "  ")
    end
    return "{\n" .. table.concat(out, ",\n") .. "\n" .. ind .. "}"
  end
  assert(fs.write(path, "return " .. ser(sc, "") .. "\n"))
  return path
end

local function finding(res, code)
  for _, f in ipairs(res.findings) do if f.code == code then return f end end
  return nil
end

local function step(res, name)
  for _, s in ipairs(res.steps) do if s.name == name then return s end end
  return nil
end

-- Runs diag10 in this process on an already active simulated host (so the spec can look at it afterwards).
local function run_inprocess(args)
  local def = assert(runbook.load(DIAG10))
  local words = {}
  for _, w in ipairs(args or {}) do words[#words + 1] = w end
  local parsed = assert(runbook.parse_args(def, words))
  return runbook.execute(def, parsed, { quiet = true, json = true, interactive = false, out = spec.tmpdir() })
end

describe("diag10 and enclaves it did not start", function()
  it("by default lists the enclave holding the pool (name, CID, debug, age, CPUs, memory), terminates nothing, runs no test enclave and fails", function()
    local r = nitrodiag({ "--json", "--sim", "cpu-pool-exhausted", "diag10", "run_seconds=1" })
    eq(r.exit_code, 1, r.stderr)
    local res = json.decode(r.stdout)
    local f = assert(finding(res, "ENCLAVES_HOLD_POOL"), "a finding says the pool is held")
    eq(f.severity, "fail")
    match(f.message, "hold 2 of 2 pool CPUs")
    local ev = table.concat(f.evidence, "\n")
    match(ev, '"hello%-basic": CID 16, debug mode, up 24%.0 h, 2 CPUs %[1,3%], 1024 MiB, RUNNING')
    match(f.remediation, "terminate=stale")
    match(f.remediation, "nitro%-cli terminate%-enclave %-%-enclave%-id i%-0123456789abcdef0%-enc")
    falsy(finding(res, "STALE_ENCLAVES"), "nothing was terminated")
    eq(step(res, "run enclaves").outcome, "skipped")
    eq(step(res, "hello control").outcome, "skipped")
    -- the bundle's describe_enclaves.json (collected after the runs) still holds it
    local b = assert(require("nd.bundle").read(res.bundle))
    local found = false
    for _, m in ipairs(b.members) do if m.name:match("/describe_enclaves%.json$") then found = true end end
    truthy(found, "describe_enclaves.json collected")
  end)

  it("in process: the production enclave is still running afterwards, and the test enclaves are gone", function()
    -- a pool of 4 CPUs, one production enclave on 2 of them: room for the test runs next to it
    local path = scenario("cpu-pool-exhausted", {
      { eif = "/home/ec2-user/hello-basic.eif", name = "payments", cpu_count = 2, memory = 1024, cid = 20, debug = false, age = 10800 } },
      { allocator_yaml = "---\nmemory_mib: 4096\ncpu_count: 4\n", host = { instance_id = "i-0123456789abcdef0", cpus = 8, threads_per_core = 2 } })
    local s = H.activate(path)
    local res = run_inprocess({ "run_seconds=1", "runs=basic,vsock" })
    eq(res.verdict, "pass", json.encode(res.findings))
    local f = assert(finding(res, "ENCLAVES_RUNNING"))
    eq(f.severity, "info")
    match(table.concat(f.evidence, "\n"), '"payments": CID 20, production %(not debug%), up 3%.0 h')
    local st = s:state()
    eq(#st.enclaves, 1, "only the production enclave is left")
    eq(st.enclaves[1].name, "payments")
    match(step(res, "cleanup").message, "the 2 test enclave%(s%) this run started are terminated")
  end)

  it("terminate=stale terminates an enclave an earlier nitrodiag run left (nitrodiag-*), not an operator's", function()
    local path = scenario("cpu-pool-exhausted", {
      { eif = "/home/ec2-user/hello-basic.eif", name = "nitrodiag-basic", cpu_count = 2, memory = 1024, cid = 16, debug = true, age = 600 } })
    local r = nitrodiag({ "--json", "--sim=" .. path, "diag10", "run_seconds=1", "runs=basic", "terminate=stale" })
    local res = json.decode(r.stdout)
    eq(r.exit_code, 0, r.stderr .. json.encode(res.findings))
    local f = assert(finding(res, "STALE_ENCLAVES"))
    match(table.concat(f.evidence, "\n"), 'terminated: .-"nitrodiag%-basic"')
    match(step(res, "run enclaves").message, "1 run%(s%) came up")
    -- the same with the operator's enclave: terminate=stale leaves it, so the runs cannot start
    local r2 = nitrodiag({ "--json", "--sim", "cpu-pool-exhausted", "diag10", "run_seconds=1", "terminate=stale" })
    eq(r2.exit_code, 1)
    local res2 = json.decode(r2.stdout)
    falsy(finding(res2, "STALE_ENCLAVES"))
    truthy(finding(res2, "ENCLAVES_HOLD_POOL"))
  end)

  it("terminate=all terminates it and runs", function()
    local r = nitrodiag({ "--json", "--sim", "cpu-pool-exhausted", "diag10", "run_seconds=1", "runs=basic", "terminate=all" })
    local res = json.decode(r.stdout)
    eq(r.exit_code, 0, r.stderr)
    eq(finding(res, "STALE_ENCLAVES").severity, "warn")
    eq(step(res, "run enclaves").outcome, "ok")
  end)
end)

describe("diag10 runs", function()
  it("an unknown run name is a usage error with a suggestion; nothing runs", function()
    local r = nitrodiag({ "--sim", "healthy", "diag10", "runs=basic,vsok" })
    eq(r.exit_code, 2)
    match(r.stderr, "argument runs must be a comma%-separated list of basic, vsock, hello, smoke, workload, got \"vsok\" %(did you mean vsock%?%)")
    eq(r.stdout, "")
  end)

  it("runs=smoke builds and runs the busybox smoke image: [busybox-smoke] alive", function()
    local r, cwd = nitrodiag({ "--json", "--sim", "healthy", "diag10", "runs=smoke", "run_seconds=1" })
    local res = json.decode(r.stdout)
    eq(r.exit_code, 0, r.stderr .. json.encode(res.findings))
    eq(step(res, "run enclaves").outcome, "ok")
    local b = assert(require("nd.bundle").read(res.bundle))
    local console
    for _, m in ipairs(b.members) do if m.name:match("/run_smoke%.console%.log$") then console = m end end
    truthy(console, "run_smoke.console.log in the bundle")
    local dir = spec.tmpdir()
    assert(spec.run{ "tar", "-xzf", res.bundle, "-C", dir })
    local top = fs.list(dir)[1]
    match(assert(fs.read(dir .. "/" .. top .. "/run_smoke.console.log")), "%[busybox%-smoke%] alive")
    local _ = cwd
  end)

  it("run_basic.log says why basic_rc=-1: stopped on purpose at the end of its window", function()
    local r = nitrodiag({ "--json", "--sim", "healthy", "diag10", "runs=basic", "run_seconds=1" })
    local res = json.decode(r.stdout)
    local dir = spec.tmpdir()
    assert(spec.run{ "tar", "-xzf", res.bundle, "-C", dir })
    local log = assert(fs.read(dir .. "/" .. fs.list(dir)[1] .. "/run_basic.log"))
    match(log, "\nbasic_rc=%-1\n# basic_rc=%-1: nitrodiag stopped the attached console on purpose at the end of its 1 s window")
    match(log, "%-%-enclave%-name nitrodiag%-basic")
  end)

  it("a predicted E26 is one finding naming the operator's path, and that run is not started", function()
    local r = nitrodiag({ "--json", "--sim", "e26-small-memory", "diag10", "runs=basic", "run_seconds=1",
      "eifs=/home/ec2-user/data-processing.eif" })
    local res = json.decode(r.stdout)
    eq(r.exit_code, 1)
    local n = 0
    for _, f in ipairs(res.findings) do
      if f.code == "ENCLAVE_MEMORY_BELOW_EIF" or f.code == "E26" or f.code == "E39" then n = n + 1 end
    end
    eq(n, 1, "one finding for the cause: " .. json.encode(res.findings))
    local f = finding(res, "ENCLAVE_MEMORY_BELOW_EIF") -- the registry's code for the cause behind E26
    match(f.message, "^predicted E26 for /home/ec2%-user/data%-processing%.eif: run%-enclave needs %-%-memory ≥ 2148")
    falsy(json.encode(res.findings):find("/tmp/", 1, true), "no temporary path in the findings")
    match(step(res, "run enclaves").message, "not run %(predicted to fail%): data%-processing %(E26%)")
  end)
end)

describe("diag10 interrupted", function()
  it("SIGINT during a run: the clean-up step still terminates the test enclave this run started", function()
    local proc = require "nd.proc"
    local nd = require "nd"
    local seen = ""
    local tmp = spec.tmpdir()
    local h <close> = proc.start{ spec.nitrodiag, "--sim-realtime", "--sim", "healthy", "diag10", "runs=basic", "run_seconds=30",
      env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "", TMPDIR = tmp },
      cwd = spec.tmpdir(), on_line = function(_, line) seen = seen .. line .. "\n" end }
    -- wait until the simulated host (in that run's TMPDIR) holds the basic test enclave
    local function running()
      for _, d in ipairs(fs.list(tmp) or {}) do
        local st = fs.read(tmp .. "/" .. d .. "/var/lib/nitrodiag-sim/state.json")
        if st and st:find('"nitrodiag-basic"', 1, true) then return true end
      end
      return false
    end
    local t0 = nd.now()
    while not running() and nd.now() - t0 < 60 do nd.sleep(0.05) end
    truthy(running(), "the basic test enclave started: " .. seen)
    h:signal("INT")
    nd.sleep(0.05)
    h:signal("INT") -- a second Ctrl-C does not cancel the clean-up
    local r = h:wait()
    eq(r.exit_code, 1, r.stdout .. r.stderr)
    match(r.stderr .. seen, "cleanup%s+[%d%.]+s%s+the 1 test enclave%(s%) this run started are terminated")
  end)
end)

describe("diag10 shows and lists", function()
  it("the E51 hint under SSM (no HOME) reaches the terminal as an info finding", function()
    local argv = { spec.nitrodiag, "--sim", "e51-no-home", "diag10", "runs=", timeout = 60, cwd = spec.tmpdir(),
      env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), NITRODIAG_PATH = "", TMPDIR = spec.tmpdir() } }
    local r = assert(spec.run(argv))
    match(r.stdout, "%[info%] ARTIFACTS_PATH_UNSET: HOME is not set")
  end)

  it("when its clean-up could not finish, the output names the exact terminate commands", function()
    local def = assert(runbook.load(DIAG10))
    local text = def.report({ steps = {} }, { started_ids = { "i-0abc-enc1", "i-0abc-enc2" },
                                              terminated = { ["i-0abc-enc1"] = true } })
    match(text, "terminate them with:\n  nitro%-cli terminate%-enclave %-%-enclave%-id i%-0abc%-enc2$")
    falsy(text:find("enc1", 1, true), "a terminated one is not listed")
  end)
end)
