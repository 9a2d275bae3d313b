-- mk-eif_spec.lua — writes the EIF of the vhost.qemu-nitro test (run-qemu-test.sh nitro) with nd.eif: the enclave
-- kernel and tests/vhost's initramfs as the one ramdisk. Paths come from ND_EIF_OUT, ND_EIF_KERNEL, ND_EIF_RAMDISK.
local eif = require "nd.eif"

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe("vhost.qemu-nitro EIF", function()
  it("is written and reads back", function()
    local out = assert(os.getenv("ND_EIF_OUT"), "ND_EIF_OUT")
    local info = assert(eif.write(out, {
      kernel = slurp(assert(os.getenv("ND_EIF_KERNEL"))),
      cmdline = "console=ttyS0 reboot=k panic=-1 quiet loglevel=3 rdinit=/init",
      ramdisks = { slurp(assert(os.getenv("ND_EIF_RAMDISK"))) },
    }))
    assert(info.crc_ok, "CRC")
    assert(#info.pcrs.PCR0 == 96, "PCR0")
  end)
end)
