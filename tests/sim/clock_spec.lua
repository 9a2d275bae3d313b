-- Simulated time (sim/clock.lua, docs/simulator.md): the simulator advances the host's clock past waits nobody
-- watches, so a slow host is diagnosed at once while every stamp and duration is the real host's. Real time is
-- measured with uv.hrtime (never nd.now, which follows the host's clock); the bounds on it are loose (a loaded
-- machine), the host's durations are exact.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local uv = require "luv"
local fs = require "nd.fs"
local nd = require "nd"
local json = require "nd.json"
local proc = require "nd.proc"
local host = require "nd.host"
local nitro = require "nd.nitro"
local clock = require "nd.sim.clock"

after_each(H.close_all)

local function real() return uv.hrtime() / 1e9 end

-- the nitro_enclaves.log stamp (util.millis) of the first line containing text, as epoch seconds
local function log_time(s, text)
  for line in (fs.read(s:path("/var/log/nitro_enclaves/nitro_enclaves.log")) or ""):gmatch("[^\n]+") do
    if line:find(text, 1, true) then
      local y, mo, d, h, mi, sec, ms = line:match("(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z")
      if y then
        local t = os.time{ year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h),
          min = tonumber(mi), sec = tonumber(sec), isdst = false }
        -- os.time reads local time; the stamps are UTC
        local utc = os.time(os.date("!*t", t))
        return t + (t - utc) + tonumber(ms) / 1000
      end
    end
  end
end

describe("the host's clock", function()
  it("a 30 s boot costs no real time and shows as 30 s in nd.now, the logs and describe-enclaves", function()
    local s = H.activate("slow-boot")
    truthy(clock.file(), "an advancing clock")
    local r0, t0 = real(), nd.now()
    local info, err = nitro.run_enclave{ eif = s:path("/home/ec2-user/slow-app.eif"), memory = 1024, cpu_count = 2 }
    truthy(info, err)
    local took = nd.now() - t0
    truthy(took >= 30 and took < 31, "host seconds " .. took)
    truthy(real() - r0 < 10, "real seconds " .. (real() - r0))
    -- nitro_enclaves.log: the CLI started, the enclave process said its ID once the heartbeat came
    local started, id_line = log_time(s, "Start Nitro CLI"), log_time(s, "mod.rs:281] Enclave ID = ")
    truthy(started and id_line, "stamps in nitro_enclaves.log")
    truthy(id_line - started >= 29.9 and id_line - started < 31, "logged " .. (id_line - started))
    -- the enclave's age is on the same clock
    local list = assert(nitro.describe_enclaves())
    local _, age = assert(nitro.enclave_started(list[1]))
    truthy(age >= 29 and age < 32, "age " .. tostring(age))
  end)

  it("diag10 on the slow host: the boot and console windows are the host's seconds, in well under their real time", function()
    local out = spec.tmpdir()
    local r0 = real()
    local r = proc.run{ host.exe(), "--sim", "slow-boot", "--json", "--out", out .. "/b.tar.gz", "diag10", "run_seconds=40",
      cwd = out, timeout = 120, env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), ND_SOURCE_DIR = spec.source_dir, TMPDIR = out, HOME = out } }
    local elapsed = real() - r0
    local res = assert(json.decode(r.stdout), r.stderr)
    eq(res.verdict, "pass")
    local runs
    for _, st in ipairs(res.steps) do if st.name == "run enclaves" then runs = st end end
    local boot
    for _, l in ipairs(runs.log) do
      local v = tostring(l):match("slow%-app: started %(boot heartbeat%) after ([%d.]+) s")
      if v then boot = tonumber(v) end
    end
    truthy(boot and boot >= 30 and boot < 31, "boot " .. tostring(boot))
    -- three 40 s console windows on the host's clock
    truthy(runs.duration >= 120, "run enclaves took " .. runs.duration .. " host seconds")
    truthy(res.duration >= 160, "diag10 took " .. res.duration .. " host seconds")
    truthy(elapsed < res.duration / 4, string.format("%.1f real s for %.1f host s", elapsed, res.duration))
  end)

  it("a step's time limit is on the host's clock: a wait past it ends the step as a timeout, at once", function()
    H.activate("healthy")
    local rb = require "nd.runbook"
    local def = { name = "t", description = "clock", steps = {
      { name = "short", timeout = 10, run = function(s) nd.sleep(3) s:ok("slept") end },
      { name = "long", timeout = 5, run = function(s) nd.sleep(600) s:ok("never") end },
    } }
    local r0 = real()
    local res = rb.execute(def, {}, { quiet = true, json = true, interactive = false, deadline = 900 })
    truthy(real() - r0 < 10, "real " .. (real() - r0))
    eq(res.steps[1].outcome, "ok")
    truthy(res.steps[1].duration >= 3 and res.steps[1].duration < 4, "short " .. res.steps[1].duration)
    eq(res.steps[2].outcome, "timeout")
    truthy(res.steps[2].duration >= 5 and res.steps[2].duration < 6, "long " .. res.steps[2].duration)
  end)

  it("run-enclave says \"Started enclave…\" at the start and prints its JSON only once the heartbeat came", function()
    -- resource_manager.rs: EnclaveHandle::start prints "Started enclave with enclave-cid…" (:726) before
    -- enclave_ready waits for the heartbeat (:591); run_enclaves' JSON follows the heartbeat. Real time here (the
    -- 30 s boot is not skipped), and the command is stopped long before the heartbeat.
    local s = H.activate("slow-boot", { time_scale = 1 })
    local h <close> = proc.start{ "nitro-cli", "run-enclave", "--eif-path", s:path("/home/ec2-user/slow-app.eif"),
      "--memory", "1024", "--cpu-count", "2" }
    local out
    local r0 = real()
    repeat
      nd.sleep(0.05)
      out = assert(h:output())
    until out.stderr:find("Started enclave with enclave-cid", 1, true) or not out.running or real() - r0 > 20
    match(out.stderr, "^Start allocating memory%.%.%.\nStarted enclave with enclave%-cid: %d+, memory: 1024 MiB, cpu%-ids: %[")
    eq(out.running, true, "still waiting for the heartbeat")
    nd.sleep(0.5)
    out = assert(h:output())
    eq(out.stdout, "", "no JSON before the heartbeat")
    eq(out.running, true)
  end)

  it("--sim-realtime (time_scale = 1) keeps the wall clock: nothing advances", function()
    local s = H.activate("healthy", { time_scale = 1 })
    falsy(clock.file())
    falsy(fs.exists(s:path("/.nd-clock")))
    local t0, r0 = nd.now(), real()
    H.run({ "nitro-cli", "describe-enclaves" })
    truthy(math.abs((nd.now() - t0) - (real() - r0)) < 0.05)
  end)
end)
