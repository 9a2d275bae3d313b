-- The simulated host can never reach the real one: trap programs (each records that it ran) sit at every override —
-- NITRODIAG_NITRO_CLI, first on PATH under every name a runbook calls, given as absolute paths — and a full diag10
-- under --sim, a runbook's direct calls, and nitrodiag started from inside the simulated host never run one of them.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local fs = require "nd.fs"
local host = require "nd.host"
local proc = require "nd.proc"
local nitro = require "nd.nitro"

after_each(H.close_all)

local TRAPPED = { "nitro-cli", "systemctl", "docker", "dmesg", "journalctl", "sh", "bash", "lsmod", "modprobe",
  "vsock-proxy", "sudo", "socat", "lscpu", "ip", "kill", "pkill" }

-- trap dir with one recording program per name; returns dir, the record file
local function traps()
  local dir = spec.tmpdir()
  local record = dir .. "/record"
  for _, n in ipairs(TRAPPED) do
    local p = dir .. "/" .. n
    assert(fs.write(p, string.format("#!/bin/sh\necho \"%s $*\" >> %s\nexit 0\n", n, record)))
    assert(require("luv").fs_chmod(p, tonumber("755", 8)))
  end
  return dir, record
end

describe("under --sim nothing reaches the real host", function()
  it("a full diag10 with every override pointing at traps runs only the simulated host", function()
    local dir, record = traps()
    local env = { PATH = dir .. ":" .. os.getenv("PATH"), NITRODIAG_NITRO_CLI = dir .. "/nitro-cli",
      ND_SOURCE_DIR = spec.source_dir, TMPDIR = spec.tmpdir(), HOME = spec.tmpdir(),
      DOCKER_HOST = "unix://" .. dir .. "/docker.sock" }
    local out = spec.tmpdir()
    local r = assert(proc.run{ host.exe(), "--sim", "healthy", "--out", out .. "/b.tar.gz", "diag10", env = env,
      cwd = out, timeout = 120 })
    eq(fs.read(record), nil, "a trap ran")
    eq(r.exit_code, 0, r.stdout .. r.stderr)
    match(r.stdout, "verdict: PASS")
  end)
  it("a runbook's own calls: the configured nitro-cli, absolute paths and other programs never run", function()
    local dir, record = traps()
    local before = host.nitro_cli()
    host.set_nitro_cli(dir .. "/nitro-cli")
    local s = H.activate("healthy")
    eq(host.nitro_cli(), s.root .. "/bin/nitro-cli")
    falsy(host.set_nitro_cli(dir .. "/nitro-cli"))
    eq(assert(nitro.describe_enclaves()), {})
    -- a path whose name is a simulated command goes to the simulated one
    local r = assert(proc.run{ dir .. "/systemctl", "is-active", "nitro-enclaves-allocator.service", timeout = 10 })
    eq(r.stdout, "active\n")
    r = assert(proc.run{ "/usr/bin/nitro-cli", "describe-enclaves", timeout = 10 })
    eq(r.stdout, "[]\n")
    -- anything else is refused
    for _, n in ipairs({ "sh", "lsmod", "vsock-proxy", dir .. "/sudo", "/bin/kill" }) do
      local v, msg, code = proc.run{ n, "-c", "true", timeout = 5 }
      falsy(v, n)
      eq(code, "EPERM", n)
      match(msg, "not a command of the simulated host")
    end
    -- nitrodiag started from inside the simulated host stays on it, even with NITRODIAG_NITRO_CLI pointing elsewhere
    local child = spec.tmpdir() .. "/child_spec.lua"
    fs.write(child, string.format([[
      local host, proc = require "nd.host", require "nd.proc"
      describe("child", function() it("stays on the simulated host", function()
        eq(host.nitro_cli(), %q)
        eq(host.root(), %q)
        eq(assert(proc.run{ host.nitro_cli(), "describe-enclaves", timeout = 10 }).stdout, "[]\n")
        local v, _, code = proc.run{ %q, "describe-enclaves", timeout = 10 }
        eq(assert(v).stdout, "[]\n")
        v, _, code = proc.run{ "lsmod", timeout = 10 }
        eq(code, "EPERM")
      end) end)]], s.root .. "/bin/nitro-cli", s.root, dir .. "/nitro-cli"))
    local env = {}
    for _, k in ipairs({ "PATH", "NITRODIAG_SIM_ROOT", "NITRODIAG_SIM_CLOCK", "ND_SOURCE_DIR", "TMPDIR" }) do
      env[k] = os.getenv(k)
    end
    env.PATH = dir .. ":" .. env.PATH -- the traps come first on PATH too
    env.NITRODIAG_NITRO_CLI = dir .. "/nitro-cli"
    r = assert(proc.run{ host.exe(), "spec", child, env = env, timeout = 30 })
    eq(r.exit_code, 0, r.stdout .. r.stderr)
    s:close()
    eq(host.nitro_cli(), dir .. "/nitro-cli")
    host.set_nitro_cli(before)
    eq(fs.read(record), nil, "a trap ran")
  end)
  it("the simulated host's clock: an enclave's start time and age read the same way as on a real host", function()
    local s = H.activate("cpu-pool-exhausted")
    local list = assert(nitro.describe_enclaves())
    local started, age = assert(nitro.enclave_started(list[1]))
    truthy(age > 86000 and age < 87000, "the stale enclave is a day old: " .. tostring(age))
    truthy(math.abs(started + age - require("nd.sim.util").time()) < 5)
    local st = assert(fs.read(s:path("/proc/" .. list[1].ProcessID .. "/stat")))
    match(st, "^" .. list[1].ProcessID .. " %(nitro%-cli%) S ")
  end)
end)
