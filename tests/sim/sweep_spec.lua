-- The sweep of what a killed earlier run left in /tmp (lua/nd/runbook.lua sweep_stale, core/tmp.c), through diag10
-- on the simulated host: the simulated vsock directory of a dead owner is removed whatever TMPDIR is, a live one is
-- kept. Its own ctest entry, run alone (RUN_SERIAL, tests/sim/tests.cmake): every `nitrodiag --sim` run sweeps /tmp,
-- so another test running in parallel would remove the planted directory first and this run would have nothing
-- to say (it happened under `ctest -j4`).
local fs = require "nd.fs"

local function nitrodiag(args)
  local argv = { spec.nitrodiag }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "",
    ND_SOURCE_DIR = spec.source_dir, TMPDIR = spec.tmpdir() }
  argv.cwd = spec.tmpdir()
  argv.timeout = 120
  return assert(spec.run(argv))
end

describe("diag10 after a killed run", function()
  it("removes the simulated vsock directory a killed run left in /tmp, whatever TMPDIR is, and keeps a live one", function()
    local proc = require "nd.proc"
    local uv = require "luv"
    local dead = proc.run{ "sh", "-c", "echo $$" }
    local dead_pid = tonumber(dead.stdout:match("%d+"))
    truthy(dead_pid, "a pid that has exited")
    local stale = string.format("/tmp/nitrodiag-simvsock-p%d-SpEcXx", dead_pid)
    local live = string.format("/tmp/nitrodiag-simvsock-p%d-SpEcYy", uv.os_getpid())
    for _, d in ipairs({ stale, live }) do
      fs.mkdir_p(d)
      fs.write(d .. "/16_5000.sock", "")
    end
    local r = nitrodiag({ "--sim", "healthy", "diag10", "runs=" })
    local stale_left, live_left = fs.exists(stale), fs.exists(live)
    os.remove(live .. "/16_5000.sock"); os.remove(live)
    os.remove(stale .. "/16_5000.sock"); os.remove(stale)
    falsy(stale_left, "the killed run's directory is removed: " .. r.stdout .. r.stderr)
    truthy(live_left, "a live process's directory is kept")
    match(r.stdout .. r.stderr, "removed " .. stale:gsub("%p", "%%%0") .. " %(left by a killed earlier run%)")
  end)
end)
