-- Each scenario's plain command shows its failure: `nitrodiag --sim <scenario> diag10` runs the operator's workload
-- the scenario puts on the host (/etc/nitrodiag/workload.d/*.json, nitro-cli --config format) and reports what a
-- real host would; the healthy host passes. Runs in simulated time (a whole diag10 takes seconds).
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local fs = require "nd.fs"
local host = require "nd.host"
local proc = require "nd.proc"
local nd = require "nd"
local json = require "nd.json"
local findings = require "nd.findings"

after_each(H.close_all)

-- scenario -> a finding code diag10 must report (nil: PASS)
local EXPECT = {
  ["healthy"] = false,
  ["e26-small-memory"] = "E26", ["e27-allocator-too-small"] = "E27", ["reboot-no-init"] = "ENCLAVE_REBOOT_NO_INIT",
  ["no-driver"] = "E19", ["e35-container-no-hugepages"] = "E35", ["e36-concurrent-run"] = "E36",
  ["e29-relaunch-after-exit"] = "E29", ["allocator-numa-partial"] = "E27", ["e59-expired-certificate"] = "E59",
  ["e50-docker-api-too-new"] = "E50", ["init-env-missing"] = "ENCLAVE_INIT_OUT_OF_MEMORY",
}

describe("scenario workloads", function()
  it("a scenario's workload is on the host where diag10 looks, in nitro-cli's --config format", function()
    local s = H.activate("e26-small-memory")
    local files = fs.list(s:path("/etc/nitrodiag/workload.d"))
    eq(files, { "01-data-processing.json" })
    local doc = json.decode(fs.read(s:path("/etc/nitrodiag/workload.d/01-data-processing.json")))
    eq(doc.eif_path, "/home/ec2-user/data-processing.eif")
    eq(doc.memory_mib, 512)
    -- nitro-cli itself accepts it as --config (RunEnclavesArgs' field names)
    local r = H.run({ "nitro-cli", "run-enclave", "--config", s:path("/etc/nitrodiag/workload.d/01-data-processing.json") })
    eq(r.exit_code, 39)
    match(r.stderr, "^%[ E26 %]")
  end)
  it("scenarios extend one another; a workload replaces the base's", function()
    local sc = assert(H.sim.load("e27-allocator-too-small"))
    eq(sc.workload[1].memory, 3072)
    eq(#sc.workload, 1)
    truthy(sc.images["data-processing:latest"]) -- from e26-small-memory
    truthy(sc.images["hello-enclave:vsock"]) -- from healthy
    match(sc.allocator_yaml, "memory_mib: 512")
    local dir = spec.tmpdir()
    fs.write(dir .. "/loop.lua", 'return { extends = "./loop.lua", description = "cycle" }')
    local v, err = H.sim.load(dir .. "/loop.lua")
    falsy(v)
    match(err, "cycle")
  end)
  it("each scenario's plain `nitrodiag --sim NAME diag10` shows its failure", function()
    local names = {}
    for name in pairs(EXPECT) do names[#names + 1] = name end
    table.sort(names)
    local results = {}
    -- six at a time: each diag10 mostly waits (simulated console windows)
    for i = 1, #names, 6 do
      local tasks = {}
      for j = i, math.min(i + 5, #names) do
        local name = names[j]
        local out = spec.tmpdir()
        tasks[#tasks + 1] = { name = name, task = nd.spawn(function()
          return proc.run{ host.exe(), "--sim", name, "--json", "--out", out .. "/b.tar.gz", "diag10", cwd = out,
            timeout = 120, env = { PATH = os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), ND_SOURCE_DIR = spec.source_dir, TMPDIR = out,
              HOME = out } }
        end) }
      end
      for _, t in ipairs(tasks) do
        local _, r = t.task:join()
        results[t.name] = r
      end
    end
    for _, name in ipairs(names) do
      local r = assert(results[name], name)
      local res = json.decode(r.stdout)
      truthy(res, name .. ": " .. r.stdout:sub(1, 300) .. r.stderr:sub(1, 300))
      local codes = {}
      -- a cause code counts for the nitro-cli code the registry says it explains
      for _, f in ipairs(res.findings or {}) do
        if f.severity == "fail" then
          codes[f.code] = true
          local def = findings.get(f.code)
          if def and def.refs and def.refs.nitro_cli then codes[def.refs.nitro_cli] = true end
        end
      end
      if EXPECT[name] then
        eq(res.verdict, "fail", name)
        truthy(codes[EXPECT[name]], name .. " reports " .. EXPECT[name] .. " (got " .. json.encode(codes) .. ")")
      else
        eq(res.verdict, "pass", name .. ": " .. json.encode(codes))
      end
    end
  end)
end)
