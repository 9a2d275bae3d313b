-- The simulated host's architecture and the EIF header's arch flag, as nitro-cli sets it: enclave_build/src/lib.rs
-- maps the Docker image's architecture arm64 -> EIF_HDR_ARCH_ARM64 (flags bit 0) and amd64 -> 0, and the image
-- format (aws-nitro-enclaves-image-format, EifHeader) stores magic[4], version u16, flags u16, big-endian. The flag
-- is read from the raw header bytes here, not through nd.eif.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local nitro = require "nd.nitro"
local fs = require "nd.fs"

local function header_flags(path)
  local b = assert(fs.read(path))
  eq(b:sub(1, 4), ".eif")
  return b:byte(7) * 256 + b:byte(8)
end

-- A copy of the healthy scenario with host.arch (and, optionally, every image's Architecture) set.
local function scenario(arch, image_arch)
  local text = assert(fs.read(spec.source_dir .. "/sim/scenarios/healthy.lua"))
  text = text:gsub("host = {", 'host = { arch = "' .. arch .. '",', 1)
  local path = spec.tmpdir() .. "/arch-" .. arch .. "-" .. tostring(image_arch) .. ".lua"
  if image_arch then -- every image of the file gets an Architecture (scenario files are plain data: edit the text)
    local n
    text, n = text:gsub('(%["hello%-enclave:vsock"%] = {)', '%1 Architecture = "' .. image_arch .. '",')
    eq(n, 1)
  end
  assert(fs.write(path, text))
  return path
end

describe("sim: EIF architecture", function()
  after_each(H.close_all)
  it("a Graviton host builds EIFs with the aarch64 flag", function()
    local s = H.activate(scenario("aarch64"))
    local out = spec.tmpdir() .. "/arm.eif"
    assert(nitro.build_enclave{ docker_uri = "hello-enclave:vsock", output = out, timeout = 30 })
    eq(header_flags(out) & 1, 1)
    eq(require("nd.eif").read(out).arch, "aarch64")
    s:close()
  end)
  it("an x86_64 host builds EIFs without it", function()
    H.activate(scenario("x86_64"))
    local out = spec.tmpdir() .. "/x86.eif"
    assert(nitro.build_enclave{ docker_uri = "hello-enclave:vsock", output = out, timeout = 30 })
    eq(header_flags(out) & 1, 0)
  end)
  it("the image's architecture wins over the host's (an amd64 image on Graviton)", function()
    H.activate(scenario("aarch64", "amd64"))
    local out = spec.tmpdir() .. "/amd64-on-arm.eif"
    assert(nitro.build_enclave{ docker_uri = "hello-enclave:vsock", output = out, timeout = 30 })
    eq(header_flags(out) & 1, 0)
  end)
  it("without a scenario arch, the simulated host is the machine nitrodiag runs on", function()
    local m = require("luv").os_uname().machine
    local want = (m == "aarch64" or m == "arm64") and "aarch64" or "x86_64"
    local s = H.activate("healthy")
    local out = spec.tmpdir() .. "/native.eif"
    assert(nitro.build_enclave{ docker_uri = "hello-enclave:vsock", output = out, timeout = 30 })
    eq(require("nd.eif").read(out).arch, want)
    eq(header_flags(out) & 1, want == "aarch64" and 1 or 0)
    s:close()
  end)
end)
