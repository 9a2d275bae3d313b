-- nd.nitro (the runbooks' nitro-cli adapter) against the simulated host: what runbooks get back from the stand-in
-- is what they would get from the real nitro-cli — values, records, root causes and err logs.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local nitro = require "nd.nitro"

after_each(H.close_all)

describe("nd.nitro on the simulated host", function()
  it("run, describe, console, terminate", function()
    local s = H.activate("healthy")
    local info, rec = nitro.run_enclave{ eif = s:path("/home/ec2-user/hello-basic.eif"), memory = 1024, cpu_count = 2,
      debug = true, timeout = 30 }
    truthy(info, rec and rec.stderr)
    eq(info.EnclaveCID, 16)
    eq(info.CPUIDs, { 1, 3 })
    local list = assert(nitro.describe_enclaves())
    eq(#list, 1)
    eq(list[1].EnclaveID, info.EnclaveID)
    eq(list[1].State, "RUNNING")
    local crec = nitro.console{ id = info.EnclaveID, disconnect_timeout = 1, timeout = 10 }
    match(crec.stdout, "%[enclave%] basic mode: alive; sleeping forever")
    local res = assert(nitro.terminate{ id = info.EnclaveID })
    eq(res.Terminated, true)
    eq(assert(nitro.describe_enclaves()), {})
  end)
  it("a stale enclave: run fails with root cause E29, the err log names the driver error", function()
    H.activate("cpu-pool-exhausted")
    local v, msg, code, rec = nitro.run_enclave{ eif = os.getenv("NITRODIAG_SIM_ROOT") .. "/home/ec2-user/hello-vsock.eif",
      memory = 1024, cpu_count = 2, timeout = 30 }
    falsy(v)
    eq(code, "E29", msg)
    eq(rec.exit_code, 39)
    eq(rec.root.code, "E29")
    local log = assert(nitro.read_err_log(rec.root.err_log_path))
    eq(log.action, "Run Enclave")
    -- nitro-cli words the driver's code in English (resource_manager.rs do_ioctl); the NE_ERR_* name never appears
    local subs = table.concat(log.subactions, "\n")
    eq(log.subactions[#log.subactions], H.src("ioctl", "NE_ERR_NO_CPUS_AVAIL_IN_POOL"))
    truthy(subs:find(H.src("resource_manager", "create_vm"), 1, true), subs)
    falsy(subs:find("NE_ERR_", 1, true))
    -- NE_CREATE_VM fails before any memory is allocated
    falsy(rec.stderr:find(H.src("resource_manager", "start_alloc"), 1, true), rec.stderr)
  end)
  it("build-enclave without HOME: E51", function()
    H.activate("e51-no-home")
    local v, _, code = nitro.build_enclave{ docker_uri = "hello-enclave:vsock", output = spec.tmpdir() .. "/x.eif", timeout = 30 }
    falsy(v)
    eq(code, "E51")
  end)
  it("explain and describe-eif", function()
    local s = H.activate("healthy")
    local text = assert(nitro.explain("E26"))
    match(text, "^Insufficient memory requested%. Such error appears")
    local d = assert(nitro.describe_eif(s:path("/home/ec2-user/hello-vsock.eif")))
    eq(d.ImageName, "hello-enclave")
    eq(#d.Measurements.PCR0, 96)
  end)
end)
