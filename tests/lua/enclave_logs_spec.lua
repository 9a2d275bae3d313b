-- The enclave log channel reaches the bundle: diag10 on a simulated host where nitrodiag-logd has written enclave
-- logs (sim/scenarios/enclave-logs.lua) collects them as enclave_logs/<enclave-id>.log.
local json = require "nd.json"
local fs = require "nd.fs"

describe("enclave logs in the bundle", function()
  it("diag10 collects /var/log/nitrodiag/enclaves/*.log", function()
    local dir = spec.tmpdir()
    local r = assert(spec.run{ spec.nitrodiag, "--sim", "enclave-logs", "--json", "--out", dir, "diag10", "run_seconds=2",
      "build=false", "runs=vsock", env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), HOME = "/root", NITRODIAG_PATH = "" }, timeout = 120 })
    local res = json.decode(r.stdout)
    truthy(res and res.bundle and fs.exists(res.bundle), "bundle written: " .. r.stderr .. r.stdout:sub(1, 2000))
    local b = assert(require("nd.bundle").read(res.bundle))
    local member
    for _, m in ipairs(b.members) do
      if m.name:match("/enclave_logs/i%-0123456789abcdef0%-enc0123456789abcd%.log$") then member = m end
    end
    truthy(member, "the enclave log is in the bundle")
    eq(#b.problems, 0)
  end, 120)
end)

describe("nitrodiag enclave-logs", function()
  local function run(args)
    local argv = { spec.nitrodiag, "--json", "enclave-logs" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    argv.env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), HOME = "/root", NITRODIAG_PATH = "" }
    argv.timeout = 60
    local r = assert(spec.run(argv))
    return json.decode(r.stdout), r
  end
  local function codes(res)
    local out = {}
    for _, f in ipairs(res.findings or {}) do out[f.code] = f end
    return out
  end

  it("lists the files, shows the newest one's last lines and names why its app died", function()
    local dir = spec.tmpdir()
    local lines = {}
    for l in assert(fs.read(spec.source_dir .. "/tests/vm/field/vm-init-lo-down/output.txt")):gmatch("[^\n]+") do
      local src = l:find("^%[init%]") and "init" or "stdout"
      lines[#lines + 1] = string.format("2026-12-06T11:42:13.%03dZ enclave=i-0abc-enc01 cid=16 seq=%d %s: %s", #lines, #lines + 1, src, l)
    end
    assert(fs.write(dir .. "/i-0abc-enc01.log", table.concat(lines, "\n") .. "\n"))
    assert(fs.write(dir .. "/cid-17.log", "2026-12-06T10:00:00.000Z enclave=cid-17 cid=17 seq=1 stdout: hello\n"))
    require("luv").fs_utime(dir .. "/cid-17.log", 1000, 1000) -- older
    local res, r = run({ "dir=" .. dir, "lines=6" })
    eq(res.verdict, "fail", r.stderr .. r.stdout:sub(1, 2000))
    local f = codes(res)
    truthy(f.ENCLAVE_LOOPBACK_DOWN, "the newest log's cause")
    eq(res.findings[1].code, "ENCLAVE_LOOPBACK_DOWN")
    res = run({ "cid-17", "dir=" .. dir })
    eq(res.verdict, "pass")
    res = run({ "i-nope", "dir=" .. dir })
    eq(res.verdict, "fail")
  end)

  it("says so when there is no log at all", function()
    local res = run({ "dir=/nonexistent/nd-enclave-logs" })
    eq(res.verdict, "fail")
    truthy(codes(res).ENCLAVE_LOGS_NONE)
    local empty = spec.tmpdir()
    res = run({ "dir=" .. empty })
    truthy(codes(res).ENCLAVE_LOGS_NONE)
  end)
end)

describe("nitrodiag image-lint and nitrodiag-init", function()
  it("recommends nitrodiag-init where the image has no PID-1 wrapper, and not where it has one", function()
    local dir = spec.tmpdir()
    assert(fs.write(dir .. "/bare.Dockerfile", 'FROM scratch\nCOPY app /app\nENTRYPOINT ["/app", "--port", "5000"]\n'))
    assert(fs.write(dir .. "/wrapped.Dockerfile", 'FROM scratch\nCOPY nitrodiag-init app /\n' ..
      'ENTRYPOINT ["/nitrodiag-init", "--log", "9100", "--", "/app"]\n'))
    local env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), HOME = "/root", NITRODIAG_PATH = "" }
    local r = assert(spec.run{ spec.nitrodiag, "image-lint", dir .. "/bare.Dockerfile", env = env, timeout = 30 })
    eq(r.exit_code, 0, r.stderr)
    match(r.stdout .. r.stderr, "no PID%-1 wrapper: if it dies the enclave reboots without a word %(consider nitrodiag%-init%)")
    r = assert(spec.run{ spec.nitrodiag, "--json", "image-lint", dir .. "/bare.Dockerfile", env = env, timeout = 30 })
    local res = json.decode(r.stdout)
    local f
    for _, x in ipairs(res.findings) do if x.code == "IMG_NO_INIT_WRAPPER" then f = x end end
    truthy(f, "IMG_NO_INIT_WRAPPER finding")
    match(f.message, "consider nitrodiag%-init")
    r = assert(spec.run{ spec.nitrodiag, "image-lint", dir .. "/wrapped.Dockerfile", env = env, timeout = 30 })
    eq(r.exit_code, 0)
    falsy((r.stdout .. r.stderr):find("PID-1 wrapper", 1, true))
  end)
end)
