-- The runbook engine through the real CLI: step timeouts kill the process tree, the run deadline gives exit 4,
-- usage errors give one line and exit 2, --json gives one document on stdout.
local nd = require "nd"
local fs = require "nd.fs"
local json = require "nd.json"
local uv = require "luv"

local RB = spec.source_dir .. "/tests/lua/runbooks/slow.lua"

local function nitrodiag(args, env)
  local argv = { spec.nitrodiag }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local e = { PATH = os.getenv("PATH"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "" }
  for k, v in pairs(env or {}) do e[k] = v end
  argv.env = e
  argv.timeout = 60
  return assert(spec.run(argv))
end

-- The step's shell writes its pid (ND_TEST_PIDFILE) before it execs sleep; the redirection creates the file before
-- echo writes, so wait for a whole line.
local function read_pid(path, secs)
  local t0 = nd.now()
  repeat
    local line = fs.read(path)
    local pid = line and line:match("^(%d+)\n$")
    if pid then return tonumber(pid) end
    nd.sleep(0.02)
  until nd.now() - t0 > (secs or 30)
  error("no pid in " .. path)
end

local function alive(pid)
  local st = fs.read("/proc/" .. pid .. "/stat")
  if not st then return false end
  return not st:match("^%d+ %b() Z")  -- a zombie is not alive, but it would still be a defect: checked below
end

describe("step timeout", function()
  -- The step timeout is 3 s, not 1: the step's shell must have written its pid before the timeout kills it, and a
  -- shell starting on a loaded machine can take longer than 1 s. The sleep lasts 100 s: ending well before is the timeout.
  it("ends a 100 s sleep after its 3 s step timeout with outcome timeout and leaves no process", function()
    local dir = spec.tmpdir()
    local pidfile = dir .. "/pid"
    local t0 = nd.now()
    local r = nitrodiag({ "--json", "run", RB, "mode=timeout" }, { ND_TEST_PIDFILE = pidfile, ND_TEST_STEP_TIMEOUT = "3" })
    local elapsed = nd.now() - t0
    eq(r.exit_code, 1, "a timed-out step fails the run")
    truthy(elapsed >= 3 and elapsed < 50, "took " .. elapsed .. " s")
    local res = assert(json.decode(r.stdout))
    eq(res.steps[1].outcome, "timeout")
    match(res.steps[1].message, "timed out after 3 s")
    eq(res.verdict, "fail")
    local pid = read_pid(pidfile, 1)
    truthy(pid, "the step wrote its pid")
    truthy(not fs.exists("/proc/" .. pid), "process " .. pid .. " is left behind (alive or zombie)")
  end)
end)

describe("run deadline", function()
  it("ends a run with a 100 s step at about 2 s with exit status 4", function()
    local t0 = nd.now()
    local r = nitrodiag({ "--deadline", "2", "--json", "run", RB }, { ND_TEST_STEP_TIMEOUT = "100" })
    local elapsed = nd.now() - t0
    eq(r.exit_code, 4)
    truthy(elapsed >= 1.9 and elapsed < 50, "took " .. elapsed .. " s (the step alone would take 100 s)")
    local res = assert(json.decode(r.stdout))
    eq(res.verdict, "timeout")
    eq(res.steps[1].outcome, "timeout")
    eq(res.steps[2].outcome, "skipped")
    eq(res.steps[3].outcome, "skipped")
    eq(res.steps[4].outcome, "ok", "an always step runs after the deadline")
    eq(res.steps[4].message, "cleaned up")
  end)
end)

describe("interruption", function()
  it("SIGTERM cancels the running step, still runs clean-up steps, and ends with a result", function()
    local proc = require "nd.proc"
    local pidfile = spec.tmpdir() .. "/pid"
    local h <close> = proc.start{ spec.nitrodiag, "--json", "run", RB, env = { PATH = os.getenv("PATH"), NITRODIAG_PATH = "",
                                  ND_TEST_STEP_TIMEOUT = "100", ND_TEST_PIDFILE = pidfile } }
    -- the first step is running (its command wrote its pid), not a guess of how long the start takes
    read_pid(pidfile)
    local t0 = nd.now()
    h:signal("TERM")
    local r = h:wait()
    truthy(nd.now() - t0 < 30, "stopped promptly (the step would wait 100 s)")
    eq(r.exit_code, 1)
    local res = assert(json.decode(r.stdout))
    eq(res.interrupted, true)
    eq(res.interrupt_reason, "interrupted by SIGTERM")
    eq(res.steps[1].outcome, "fail")
    eq(res.steps[2].outcome, "skipped")
    eq(res.steps[4].outcome, "ok", "the always step ran")
  end)
end)

describe("usage errors", function()
  local function one_line_exit2(args, pattern)
    local r = nitrodiag(args)
    eq(r.exit_code, 2, table.concat(args, " "))
    eq(r.stdout, "")
    local lines = 0
    for _ in r.stderr:gmatch("[^\n]+") do lines = lines + 1 end
    eq(lines, 1, "one line: " .. r.stderr)
    match(r.stderr, pattern)
  end
  it("unknown runbook", function() one_line_exit2({ "no-such-runbook" }, "unknown runbook: no%-such%-runbook") end)
  it("unknown argument with a suggestion", function()
    one_line_exit2({ "run", RB, "slep=3" }, 'unknown argument "slep" %(did you mean sleep=%?%)')
  end)
  it("bad value", function() one_line_exit2({ "run", RB, "sleep=abc" }, "argument sleep must be a number") end)
  it("value outside the choices", function() one_line_exit2({ "run", RB, "mode=x" }, "must be one of all, timeout") end)
  it("unknown option", function() one_line_exit2({ "--jsn", "run", RB }, "unknown option %-%-jsn") end)
  it("did you mean for a misspelt runbook on the path", function()
    local dir = spec.tmpdir()
    assert(fs.write(dir .. "/doctorx.lua", 'return { description = "x", steps = { { name = "a", run = function() end } } }'))
    local r = nitrodiag({ "doctrx" }, { NITRODIAG_PATH = dir })
    eq(r.exit_code, 2)
    match(r.stderr, "did you mean doctorx%?")
  end)
end)

describe("results", function()
  it("records a raising step as failed with its traceback and goes on", function()
    -- sleep 0 under the default 1 s step timeout could time out on a loaded machine: the step gets 60 s
    local r = nitrodiag({ "--json", "run", RB, "sleep=0" }, { ND_TEST_STEP_TIMEOUT = "60" })
    eq(r.exit_code, 1)
    local res = assert(json.decode(r.stdout))
    eq(res.steps[1].outcome, "ok")
    eq(res.steps[2].outcome, "fail")
    match(res.steps[2].error, "boom from a step")
    match(res.steps[2].error, "stack traceback")
    eq(res.steps[3].outcome, "warn")
    eq(res.findings[1].code, "T01")
    eq(res.findings[1].evidence, { "line 1" })
    eq(res.verdict, "fail")
  end)
  it("an operator's copy on NITRODIAG_PATH wins and list shows which file is used", function()
    local dir = spec.tmpdir()
    assert(fs.write(dir .. "/slow.lua", 'return { description = "my copy", steps = { { name = "a", run = function() end } } }'))
    local r = nitrodiag({ "list" }, { NITRODIAG_PATH = dir .. ":" .. spec.source_dir .. "/tests/lua/runbooks" })
    eq(r.exit_code, 0)
    match(r.stdout, "slow%s+my copy")
    match(r.stdout, dir:gsub("%p", "%%%0") .. "/slow%.lua  %(overrides .*tests/lua/runbooks/slow%.lua%)")
    local r2 = nitrodiag({ "slow" }, { NITRODIAG_PATH = dir })
    eq(r2.exit_code, 0)
    match(r2.stdout, "verdict: PASS")
  end)
end)
