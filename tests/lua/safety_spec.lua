-- Safe and right by default (issue 12), the engine's part, through the real CLI: a second Ctrl-C/SIGTERM never
-- cancels a clean-up step; info findings are shown (and -q hides them); a file that is not a runbook is a load
-- error (exit 3); `list` and `<name>` agree on the file; --json usage errors are JSON; an unknown --sim scenario is
-- named as one; help marks positional arguments and hides empty defaults; tracebacks leave out nitrodiag's frames;
-- a spec knows its own directory.
local nd = require "nd"
local fs = require "nd.fs"
local json = require "nd.json"

local RB = spec.source_dir .. "/tests/lua/runbooks/signals.lua"

local function nitrodiag(args, opts)
  opts = opts or {}
  local argv = { spec.nitrodiag }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local e = { PATH = os.getenv("PATH"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = opts.path or "",
              TMPDIR = spec.tmpdir() }
  for k, v in pairs(opts.env or {}) do e[k] = v end
  argv.env = e
  argv.cwd = opts.cwd
  argv.timeout = 60
  return assert(spec.run(argv))
end

local function wait_for(path, secs)
  local t0 = nd.now()
  while not fs.exists(path) and nd.now() - t0 < (secs or 60) do nd.sleep(0.02) end
  return fs.exists(path)
end

describe("signals during clean-up", function()
  it("a second SIGINT and a SIGTERM do not cancel the clean-up step; the run then ends with a result", function()
    local proc = require "nd.proc"
    local dir = spec.tmpdir()
    -- the clean-up step runs until the spec creates cleanup.go: the signals surely arrive while it runs (a fixed
    -- 1.5 s clean-up could end first on a loaded machine), and each is sent once the one before was handled
    local errs = {}
    local function said(pattern)
      local t0 = nd.now()
      repeat
        for _, l in ipairs(errs) do if l:find(pattern) then return true end end
        nd.sleep(0.02)
      until nd.now() - t0 > 60
      return false
    end
    local h <close> = proc.start{ spec.nitrodiag, "--json", "run", RB,
      env = { PATH = os.getenv("PATH"), NITRODIAG_PATH = "", ND_TEST_DIR = dir, ND_TEST_CLEANUP_GO = dir .. "/cleanup.go" },
      on_line = function(stream, line) if stream == "stderr" then errs[#errs + 1] = line end end }
    truthy(wait_for(dir .. "/long.started"), "the long step started")
    h:signal("INT")
    truthy(wait_for(dir .. "/cleanup.started"), "the clean-up step started")
    h:signal("INT")
    truthy(said("SIGINT: finishing clean%-up step"), "the second SIGINT was handled")
    h:signal("TERM")
    truthy(said("SIGTERM: finishing clean%-up step"), "the SIGTERM was handled")
    falsy(fs.exists(dir .. "/cleanup.done"), "the clean-up step still runs")
    fs.write(dir .. "/cleanup.go", "1")
    local r = h:wait()
    truthy(fs.exists(dir .. "/cleanup.done"), "the clean-up step finished: " .. r.stderr)
    eq(r.exit_code, 1)
    local res = assert(json.decode(r.stdout))
    eq(res.interrupted, true)
    eq(res.interrupt_reason, "interrupted by SIGINT")
    eq(res.steps[2].outcome, "ok")
    eq(res.steps[2].message, "cleaned up")
    match(r.stderr, "SIGINT: finishing clean%-up step 'cleanup' first %(at most 10 s%)")
    match(r.stderr, "SIGTERM: finishing clean%-up step 'cleanup' first")
  end)
end)

describe("findings on the terminal", function()
  it("an info finding is printed; -q hides it", function()
    local r = nitrodiag({ "--deadline", "0.3", "run", RB, "cleanup_seconds=0" }, { env = { ND_TEST_DIR = spec.tmpdir() } })
    eq(r.exit_code, 4)
    match(r.stdout, "%[info%] T_INFO: an info finding for the operator")
    local q = nitrodiag({ "-q", "--deadline", "0.3", "run", RB, "cleanup_seconds=0" }, { env = { ND_TEST_DIR = spec.tmpdir() } })
    falsy(q.stdout:find("T_INFO", 1, true), q.stdout)
    match(q.stdout, "verdict: TIMEOUT")
  end)
end)

describe("loading", function()
  it("a file that returns nothing is a load error, exit 3", function()
    local dir = spec.tmpdir()
    fs.write(dir .. "/nothing.lua", "local x = 1\n")
    fs.write(dir .. "/number.lua", "return 42\n")
    local r = nitrodiag({ "run", dir .. "/nothing.lua" })
    eq(r.exit_code, 3)
    match(r.stderr, "not a runbook: the file returned nothing")
    local r2 = nitrodiag({ "--json", "run", dir .. "/number.lua" })
    eq(r2.exit_code, 3)
    match(r2.stderr, "not a runbook: the file returned a number")
    local doc = assert(json.decode(r2.stdout), "a JSON document on stdout")
    eq(doc.exit_code, 3)
    eq(doc.verdict, "error")
  end)

  it("list and <name> agree on which file wins: a broken copy in ./ is listed and run; a non-runbook in ./ is neither", function()
    local dir = spec.tmpdir()
    fs.write(dir .. "/doctor.lua", "-- my broken copy\nreturn { description = 'x', steps = { oops } \n")
    fs.write(dir .. "/explain.lua", "-- a helper module, not a runbook\nreturn { f = function() end }\n")
    local l = nitrodiag({ "--json", "list" }, { cwd = dir })
    eq(l.exit_code, 0, l.stderr)
    local by = {}
    for _, e in ipairs(json.decode(l.stdout)) do by[e.name] = e end
    eq(by.doctor.path, "./doctor.lua")
    match(by.doctor.description, "cannot load")
    truthy(by.explain.path ~= "./explain.lua", "a non-runbook file in ./ does not shadow the shipped explain")
    local r = nitrodiag({ "doctor" }, { cwd = dir })
    eq(r.exit_code, 3)
    match(r.stderr, "%./doctor%.lua")
    local r2 = nitrodiag({ "explain", "E26" }, { cwd = dir })
    eq(r2.exit_code, 0, r2.stderr .. r2.stdout)
  end)
end)

describe("usage errors", function()
  it("under --json a usage error still prints one JSON document", function()
    local r = nitrodiag({ "--json", "run", RB, "nosuch=1" })
    eq(r.exit_code, 2)
    local doc = assert(json.decode(r.stdout), "JSON on stdout: " .. r.stdout)
    eq(doc.exit_code, 2)
    eq(doc.verdict, "error")
    match(doc.error, "unknown argument \"nosuch\"")
    local r2 = nitrodiag({ "--json", "no-such-runbook" })
    eq(json.decode(r2.stdout).exit_code, 2)
  end)

  it("--sim with an unknown scenario names the scenario", function()
    local r = nitrodiag({ "--sim", "cpu-pool-exhaustd", "doctor" })
    eq(r.exit_code, 2)
    match(r.stderr, "^nitrodiag: %-%-sim: unknown scenario cpu%-pool%-exhaustd %(did you mean cpu%-pool%-exhausted%?%)\n$")
    local r2 = nitrodiag({ "--sim", "doctor" }) -- a command after --sim: the default scenario
    falsy(r2.stderr:find("unknown scenario", 1, true), r2.stderr)
  end)

  it("a step can end the run as a usage error (exit 2)", function()
    local dir = spec.tmpdir()
    fs.write(dir .. "/u.lua", "return { description = 'u', steps = { { name = 'a', run = function(s) s:usage('no such code: E99') end }," ..
      " { name = 'b', run = function(s) s:ok('ran') end } } }\n")
    local r = nitrodiag({ "--json", "run", dir .. "/u.lua" })
    eq(r.exit_code, 2)
    local res = json.decode(r.stdout)
    eq(res.verdict, "error")
    eq(res.steps[2].outcome, "skipped")
    match(r.stderr, "no such code: E99")
  end)
end)

describe("help", function()
  it("marks positional arguments and shows no empty default", function()
    local r = nitrodiag({ "help", "bundle" })
    eq(r.exit_code, 0)
    match(r.stdout, "usage: nitrodiag bundle %[<file>%]")
    match(r.stdout, "\n  <file> ")
    local d = nitrodiag({ "help", "diag10" })
    match(d.stdout, "\n  eifs=%s+list%s+[^\n]*comma%-separated[^\n]*\n")
    falsy(d.stdout:find("(default )", 1, true), "an empty default is not shown: " .. d.stdout)
    match(d.stdout, "%[basic|vsock|hello|smoke|workload%]")
  end)
end)

describe("tracebacks", function()
  it("a raising step's traceback (-v) names the runbook, not nitrodiag's engine", function()
    local r = nitrodiag({ "-v", "run", spec.source_dir .. "/tests/lua/runbooks/slow.lua", "sleep=0" })
    match(r.stderr, "slow%.lua:%d+: boom from a step")
    falsy(r.stderr:find("runbook.lua", 1, true), r.stderr)
    falsy(r.stderr:find("[C]: in", 1, true), r.stderr)
  end)

  it("a failing spec's traceback leaves out the spec runner; spec.dir is the spec's directory", function()
    local dir = spec.tmpdir()
    fs.write(dir .. "/fixture.txt", "hello")
    fs.write(dir .. "/x_spec.lua", "describe('d', function() it('reads its fixture', function() " ..
      "eq(require('nd.fs').read(spec.dir .. '/fixture.txt'), 'hello') end) it('fails', function() eq(1, 2) end) end)\n")
    local r = nitrodiag({ "spec", dir .. "/x_spec.lua" })
    eq(r.exit_code, 1)
    match(r.stdout, "ok   d reads its fixture")
    match(r.stdout, "x_spec%.lua:1: expected 2, got 1")
    falsy(r.stdout:find("spec.lua:%d+: in") and r.stdout:find("nd/spec.lua", 1, true), r.stdout)
    falsy(r.stdout:find("[C]: in", 1, true), r.stdout)
  end)
end)

describe("nitrodiag bundle", function()
  local function make(dir, name, fail)
    local rb = dir .. "/" .. name .. ".lua"
    fs.write(rb, "return { description = 'bundle maker', collect = true, steps = { { name = 'only', run = function(s) " ..
      "s.bundle:add_string('x.txt', 'x') " ..
      (fail and ("s:fail(string.rep('a long failure message ', 12)) ") or "s:ok('fine') ") .. "end } } }\n")
    local r = nitrodiag({ "--json", "--out", dir, "run", rb })
    local res = assert(json.decode(r.stdout), r.stderr)
    return res.bundle, res
  end

  it("a FAIL bundle is not a PASS; two matches open the newest and list the other; report.md tables fit 100 columns", function()
    local dir = spec.tmpdir()
    local failed = make(dir, "first", true)
    local passed = make(dir, "second", false)
    truthy(failed and passed, "two bundles")
    local r = nitrodiag({ "--json", "bundle", failed })
    eq(r.exit_code, 0, r.stderr)
    local res = json.decode(r.stdout)
    eq(res.verdict, "warn")
    eq(res.findings[1].code, "BUNDLED_RUN_FAILED")
    match(res.findings[1].message, "the bundled first run's verdict: FAIL")
    assert(spec.run{ "touch", "-d", "2020-01-01", failed })
    local two = nitrodiag({ "bundle", failed, passed })
    eq(two.exit_code, 0, two.stderr)
    match(two.stdout, "2 bundles given; opening the newest: " .. passed:gsub("%p", "%%%0"))
    match(two.stdout, "also: " .. failed:gsub("%p", "%%%0"))
    match(two.stdout, "verdict: PASS")
    -- the FAIL bundle's report.md: every table line within 100 columns, the long message in full after the table
    local out = spec.tmpdir()
    assert(spec.run{ "tar", "-xzf", failed, "-C", out })
    local md = assert(fs.read(out .. "/" .. fs.list(out)[1] .. "/report.md"))
    for line in md:gmatch("[^\n]+") do
      if line:match("^|") then truthy((utf8.len(line) or #line) <= 100, "table line of " .. utf8.len(line) .. ": " .. line) end
    end
    match(md, "\n%- 1%. only: a long failure message a long failure message")
  end)
end)

describe("the same cause gets the same exit status", function()
  it("bad input to explain, kms-logs, triage and eif is a usage error (exit 2) that says why", function()
    local cases = {
      { { "explain", "E99" }, "E99 is not a nitro%-cli error code" },
      { { "explain", "-" }, "stdin is empty: nothing to explain" },
      { { "kms-logs", "since=yesterday" }, "since: bad time 'yesterday'" },
      { { "kms-logs", "mode=foo" }, "argument mode must be one of" },
      { { "triage", "/nonexistent" }, "/nonexistent: no such file" },
      { { "eif", "/tmp" }, "/tmp is a directory" },
    }
    for _, c in ipairs(cases) do
      local r = nitrodiag(c[1])
      local what = table.concat(c[1], " ")
      eq(r.exit_code, 2, what .. ": " .. r.stdout .. r.stderr)
      match(r.stderr, "nitrodiag: [%w%-]+: " .. c[2])
      falsy(r.stderr:find("not run:", 1, true), what .. ": no \"not run\" lines: " .. r.stderr)
    end
  end)
end)

describe("host paths under --root", function()
  it("follows the documented rule: nd.fs takes paths as given, nd.host.path and read_err_log read under the root", function()
    local root = spec.tmpdir()
    assert(fs.mkdir_p(root .. "/var/log/nitro_enclaves"))
    fs.write(root .. "/var/log/nitro_enclaves/err.log", "  Action: Run Enclave\n")
    local rb = spec.tmpdir() .. "/paths.lua"
    fs.write(rb, [[return { description = 'paths', steps = { { name = 'p', run = function(s)
      local fs, host, nitro = require 'nd.fs', require 'nd.host', require 'nd.nitro'
      s:output({ given = fs.exists('/var/log/nitro_enclaves/err.log'),
                 mapped = fs.exists(host.path('/var/log/nitro_enclaves/err.log')),
                 err_log = nitro.read_err_log('/var/log/nitro_enclaves/err.log') ~= nil })
    end } } }
]])
    local r = nitrodiag({ "--json", "--root", root, "run", rb })
    eq(r.exit_code, 0, r.stderr)
    local out = json.decode(r.stdout).output
    eq(out.mapped, true)
    eq(out.err_log, true)
    eq(out.given, fs.exists("/var/log/nitro_enclaves/err.log"), "nd.fs reads the path as given")
    -- and the rule is written down where runbook authors look
    match(assert(fs.read(spec.source_dir .. "/docs/runbooks.md")), "### Host paths: what reads under `%-%-root` and `%-%-sim`")
  end)
end)
