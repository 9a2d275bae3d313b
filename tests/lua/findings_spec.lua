-- nd.findings and nd.diagnose: every code a runbook, the C lint or the preflight emits is in the registry (one code
-- per cause), entries are complete, templates fill, rules load from the operator directories and a broken rule file
-- is reported without stopping triage.
local fs = require "nd.fs"
local findings = require "nd.findings"
local diagnose = require "nd.diagnose"

local SRC = spec.source_dir

local function files(dir, pat)
  local out = {}
  for _, n in ipairs(assert(fs.list(dir))) do
    local p = dir .. "/" .. n
    if fs.is_dir(p) then for _, q in ipairs(files(p, pat)) do out[#out + 1] = q end
    elseif n:match(pat) then out[#out + 1] = p end
  end
  return out
end

describe("nd.findings registry", function()
  it("knows every finding code the runbooks and modules emit", function()
    local missing = {}
    local list = files(SRC .. "/scripts", "%.lua$")
    for _, p in ipairs(files(SRC .. "/lua/nd", "%.lua$")) do list[#list + 1] = p end
    for _, p in ipairs(list) do
      local text = assert(fs.read(p))
      for code in text:gmatch('code = "([%u%d_]+)"') do
        if not findings.get(code) then missing[#missing + 1] = fs.basename(p) .. ": " .. code end
      end
      for code in text:gmatch('finding = "([%u%d_]+)"') do
        if not findings.get(code) then missing[#missing + 1] = fs.basename(p) .. ": " .. code end
      end
    end
    table.sort(missing)
    eq(missing, {})
  end)
  it("knows the image-lint codes of core/imagelint.c and maps every code core/preflight.c predicts", function()
    local lint = assert(fs.read(SRC .. "/core/imagelint.c"))
    local n = 0
    for code in lint:gmatch('"(IMG_[%u_]+)"') do
      n = n + 1
      truthy(findings.get(code), code)
      truthy(#findings.get(code).remediation > 0, code .. " has the knowledge text")
    end
    truthy(n >= 5, "image-lint codes found")
    local pre = assert(fs.read(SRC .. "/core/preflight.c"))
    for code in pre:gmatch('"(E%d%d)"') do truthy(findings.PREFLIGHT[code] or findings.get(code), code) end
    local f = findings.preflight({ code = "E26", requested = 512, limit = 2148, message = "x", note = "" })
    eq(f.code, "ENCLAVE_MEMORY_BELOW_EIF")
    match(f.message, "512 MiB is below the EIF's minimum of 2148 MiB")
    eq(f.nitro_cli, "E26")
  end)
  it("has complete entries and fills templates; unknown codes are programming errors", function()
    for _, e in ipairs(findings.list()) do
      truthy(e.title ~= "" and e.message ~= "", e.code)
      truthy(({ fail = true, warn = true, info = true, ok = true })[e.severity], e.code)
    end
    local f = findings.make("ALLOCATOR_MEMORY_TOO_SMALL", { memory_mib = 3072, fix = "first this" }, { "ev" })
    match(f.message, "3072 MiB")
    match(f.remediation, "^first this; set memory_mib: 3072")
    eq(f.refs.nitro_cli, "E27")
    eq(findings.render("{a} and {b}", { a = 1 }), "1 and ?")
    raises(function() findings.make("NO_SUCH_CODE") end, "unknown finding code")
    raises(function() findings.define{ code = "lower", severity = "fail", title = "t" } end, "UPPER_SNAKE")
  end)
end)

describe("nd.diagnose rules", function()
  it("ranks, groups follow-ups and never lets a broken rule stop the others", function()
    local res = diagnose.run("x boom y", { rules = {
      { id = "raises", match = function() error("bad rule") end },
      { id = "low", finding = "E00", confidence = 0.1, match = function() return { vars = { detail = "d" } } end },
      { id = "high", finding = "DEVICE_MISSING", confidence = 0.9, match = function(f) return f:has("boom") end },
      { id = "follow", finding = "STALE_ENCLAVE_PROCESS", secondary = true, match = function() return true end },
    } })
    eq(res.top.code, "DEVICE_MISSING")
    eq(res.causes[2].code, "E00")
    eq(res.consequences[1].code, "STALE_ENCLAVE_PROCESS")
    match(res.errors[1], "rule raises")
  end)
  it("loads operators' rule files from $NITRODIAG_PATH/rules after the shipped ones; a broken one is reported", function()
    local dir = spec.tmpdir()
    assert(fs.mkdir_p(dir .. "/rules"))
    assert(fs.write(dir .. "/rules/a.lua", assert(fs.read(SRC .. "/docs/examples/rules/sidecar.lua"))))
    assert(fs.write(dir .. "/rules/b.lua", "return { { id = 'nomatch' } }"))
    assert(fs.write(dir .. "/in.txt", "[init] starting\nsidecar: connection refused\nreboot: Restarting system\n"))
    local r = assert(spec.run({ spec.nitrodiag, "--json", "-v", "triage", dir .. "/in.txt",
      env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), NITRODIAG_PATH = dir }, timeout = 30 }))
    local doc = assert(require("nd.json").decode(r.stdout))
    eq(doc.findings[1].code, "SITE_SIDECAR_DOWN")
    local logs = require("nd.json").encode(doc)
    match(logs, "rule file not loaded: .-b%.lua")
    -- `nitrodiag findings` shows the operator's code and fails on the broken file
    r = assert(spec.run({ spec.nitrodiag, "findings", "SITE_SIDECAR_DOWN",
      env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), NITRODIAG_PATH = dir }, timeout = 30 }))
    eq(r.exit_code, 1)
    match(r.stdout, "rule: site%-sidecar")
    match(r.stdout, "RULE_FILE_BROKEN")
  end)
  it("weighs host state: the same E29 is a stale enclave when one runs, the transient when none does", function()
    local function triage(scenario)
      local r = assert(spec.run({ spec.nitrodiag, "--json", "--sim", scenario, "triage",
        SRC .. "/tests/field/cli-433-e29-after-exit/output.txt", "host=true",
        env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), NITRODIAG_PATH = "" }, timeout = 60 }))
      return assert(require("nd.json").decode(r.stdout), r.stderr).findings[1].code
    end
    eq(triage("cpu-pool-exhausted"), "ENCLAVES_HOLD_POOL")
    eq(triage("healthy"), "CPU_POOL_NOT_RELEASED")
  end, 120)
  it("orders blocks by their err-log times: an E39 pasted first is not taken for the root", function()
    local text = assert(fs.read(SRC .. "/tests/field/workshop-e26-memory/output.txt"))
    local e26, e39 = text:match("^(.-)(Failed connections.*)$")
    local res = diagnose.run(e39 .. "\n" .. e26)
    eq(res.nitro_cli, "E26")
    eq(res.top.code, "ENCLAVE_MEMORY_BELOW_EIF")
    truthy(res.facts.reordered)
  end)
  it("puts E45 after an application's own error under that error (a consequence, not a crash of the console)", function()
    local res = diagnose.run("[  1.0] [init] starting\nTraceback (most recent call last):\nValueError: bad key\n" ..
      "[  2.0] reboot: Restarting system\n[ E45 ] Enclave console read error. Such error appears when reading fails.\n")
    eq(res.top.code, "ENCLAVE_APP_CRASHED")
    eq(res.consequences[1] and res.consequences[1].code, "ENCLAVE_EXITED_CONSOLE_CLOSED")
    eq(res.nitro_cli, "E45")
  end)
  it("tells E19 on the device, on ne_cpus and on the log file apart, and E36 by its boot error", function()
    local function top(t) return diagnose.run(t).top.code end
    eq(top("[ E19 ] File operation failure.\nFile: '/dev/nitro_enclaves', failing operation: 'Open'."), "DEVICE_MISSING")
    eq(top("[ E19 ] File operation failure.\nFile: '/dev/nitro_enclaves', failing operation: 'Open'.\nPermission denied (os error 13)"), "NOT_IN_NE_GROUP")
    eq(top("[ E19 ] File operation failure.\nFile: '/sys/module/nitro_enclaves/parameters/ne_cpus', failing operation: 'Open'."), "DRIVER_NOT_LOADED")
    eq(top("[ E19 ] File operation failure.\nFile: '/var/log/nitro_enclaves/nitro_enclaves.log', failing operation: 'Open'."), "LOG_FILE_NOT_WRITABLE")
    eq(top("[ E36 ] Enclave boot failure.\n  Waiting on enclave to boot failed with error VsockReceivingError"), "BOOT_VSOCK_RECEIVE")
    eq(top("[ E36 ] Enclave boot failure.\n  Waiting on enclave to boot failed with error VsockTimeoutError"), "BOOT_HEARTBEAT_TIMEOUT")
    eq(top("Start allocating memory...\nStart allocating memory...\n[ E36 ] Enclave boot failure."), "BOOT_CONCURRENT_RUN")
    eq(top("[ E59 ] EIF signature checker error.\n    Invalid signing certificate: expired"), "SIGNING_CERT_EXPIRED")
    eq(top("[ E29 ] Ioctl failure.\n    The enclave cannot be created because no CPUs are available in the pool"), "ENCLAVES_HOLD_POOL")
    eq(diagnose.run("[ E29 ] Ioctl failure.", { host = { enclaves = {} } }).top.code, "CPU_POOL_NOT_RELEASED")
    eq(diagnose.run("[ E29 ] Ioctl failure.\n    The enclave cannot be created because no CPUs are available in the pool",
      { host = { enclaves = { { State = "RUNNING" } } } }).top.code, "ENCLAVES_HOLD_POOL")
  end)
end)
