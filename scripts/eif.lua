-- scripts/eif.lua — `nitrodiag eif FILE`: validates an Enclave Image Format file (header, section table, each section
-- header, CRC32) and shows what `nitro-cli describe-eif` shows — EifVersion, PCR0/1/2 (PCR8 when signed), IsSigned,
-- CheckCRC, ImageName/ImageVersion/Metadata — plus the sections, the kernel command line and the minimum --memory
-- run-enclave accepts (4 × the file size, E26 below it), compared with allocator.yaml when the host has one. With
-- --json the result carries the describe-eif fields at its top level (and `eif` with the details). Works without
-- nitro-cli (core/eif.c computes the PCRs with OpenSSL).
local eif = require "nd.eif"
local findings = require "nd.findings"
local allocator = require "nd.allocator"
local json = require "nd.json"

local info      -- what eif.read returned
local lines = {}

local function human_size(n)
  if n >= 1 << 30 then return string.format("%.2f GiB", n / (1 << 30)) end
  if n >= 1 << 20 then return string.format("%.2f MiB", n / (1 << 20)) end
  if n >= 1 << 10 then return string.format("%.1f KiB", n / (1 << 10)) end
  return n .. " B"
end

local DESCRIBE_KEYS = { "EifVersion", "Measurements", "IsSigned", "SigningCertificate", "CheckCRC", "SignatureCheck",
                        "ImageName", "ImageVersion", "Metadata" }

return {
  name = "eif",
  description = "Validate an EIF (header, sections, CRC) and show its PCRs, metadata and minimum enclave memory",
  categories = { "enclave", "image" },
  args = {
    { name = "file", type = "string", positional = 1, required = true, help = "the .eif file" },
    { name = "memory", type = "integer", help = "the --memory (MiB) you plan to run it with: checked against the 4x rule" },
  },
  deadline = 120,
  steps = {
    { name = "read", timeout = 100, required = true,
      run = function(s)
        s:progress("reading and hashing " .. s.args.file)
        local st = require("luv").fs_stat(s.args.file)
        if not st then s:usage(s.args.file .. ": no such file") end
        if st.type == "directory" then s:usage(s.args.file .. " is a directory: give the EIF file") end
        local r, err, code = eif.read(s.args.file)
        if not r then
          s:finding{ code = code == "EBADMSG" and "EIF_CORRUPT" or "EIF_UNREADABLE", severity = "fail", message = err,
                     evidence = { s.args.file },
                     remediation = code == "EBADMSG" and "rebuild the image with nitro-cli build-enclave, or copy it again "
                       .. "(compare sizes and checksums with the original)" or nil }
          return
        end
        info = r
        s:log(string.format("%s: %d bytes, EIF version %d, %d sections, CRC %s (stored %s)", s.args.file, r.file_size,
          r.version, r.num_sections, r.crc_computed, r.crc_stored))
        if not r.crc_ok then
          s:finding{ code = "EIF_CRC", severity = "fail",
                     message = string.format("CRC32 mismatch: the header says %s, the content gives %s", r.crc_stored,
                       r.crc_computed),
                     evidence = { "CheckCRC: false" },
                     remediation = "the file was modified or damaged after it was built: copy or rebuild it" }
        end
        s:ok(string.format("valid EIF v%d, %s, %d sections", r.version, human_size(r.file_size), r.num_sections))
      end },
    { name = "structure", timeout = 10,
      when = function() return info ~= nil end,
      run = function(s)
        local count = {}
        for _, sec in ipairs(info.sections) do count[sec.name] = (count[sec.name] or 0) + 1 end
        if (count.kernel or 0) ~= 1 then
          s:finding{ code = "EIF_KERNEL", severity = "fail", message = string.format("%d kernel sections (expected 1)",
            count.kernel or 0) }
        end
        if (count.cmdline or 0) ~= 1 then
          s:finding{ code = "EIF_CMDLINE", severity = "warn", message = string.format("%d cmdline sections (expected 1)",
            count.cmdline or 0) }
        end
        if (count.ramdisk or 0) < 2 then
          s:finding{ code = "EIF_RAMDISKS", severity = "warn",
                     message = string.format("%d ramdisk section(s): nitro-cli images have the bootstrap ramdisk (init, "
                       .. "nsm.ko) and at least one customer ramdisk", count.ramdisk or 0) }
        end
        if info.trailing_bytes >= 12 then
          -- nitro-cli reads section headers until the file ends: the tail is read as a section (zeros: type 0)
          s:finding{ code = "EIF_TRAILING", severity = "fail",
                     message = string.format("%d bytes after the last section: nitro-cli's EIF reader takes them for "
                       .. "another section and fails (describe-eif: E35 \"Found invalid EIF section\")", info.trailing_bytes),
                     remediation = "rebuild the EIF with nitro-cli build-enclave, or cut the file at the end of its last section" }
        elseif info.trailing_bytes > 0 then
          s:finding{ code = "EIF_TRAILING", severity = "warn",
                     message = string.format("%d bytes after the last section (they count for the 4x memory rule)",
                       info.trailing_bytes) }
        end
        if info.metadata_error then
          s:finding{ code = "EIF_METADATA", severity = "warn", message = info.metadata_error }
        end
        if info.is_signed and not info.Measurements.PCR8 then
          s:finding{ code = "EIF_SIGNATURE", severity = "warn",
                     message = "signature section present but no signing certificate could be read from it (no PCR8)" }
        end
      end },
    { name = "signature", timeout = 10,
      -- Signed EIFs: run-enclave refuses an EIF whose signature does not verify or whose signing certificate is outside
      -- its validity (E59: src/enclave_proc/commands.rs calls PcrSignatureChecker::verify, since v1.1.0 in the source).
      when = function() return info ~= nil and info.signing ~= nil end,
      run = function(s)
        local F = require "nd.findings"
        local c, now = info.signing, os.time()
        local function day(t) return os.date("!%Y-%m-%d %H:%M:%S UTC", t) end
        s:log(string.format("signing certificate %s, issuer %s, valid %s .. %s, PCR8 %s", c.subject, c.issuer,
          day(c.not_before), day(c.not_after), tostring(info.Measurements.PCR8)))
        if not c.signature_ok then
          s:finding(F.make("EIF_SIGNATURE_INVALID", { reason = c.signature_error or "?" }, { "SignatureCheck: false" }))
        end
        if now > c.not_after or now < c.not_before then
          local f = F.make("SIGNING_CERT_EXPIRED", {}, { "NotBefore " .. day(c.not_before), "NotAfter " .. day(c.not_after) })
          f.message = string.format("the signing certificate (%s) is %s (valid %s .. %s): nitro-cli run-enclave refuses "
            .. "this EIF with E59 (the AWS user guide lists E36, E39 and E11 for older releases)", c.subject, now > c.not_after and "expired" or "not yet valid", day(c.not_before),
            day(c.not_after))
          s:finding(f)
        elseif c.not_after - now < 30 * 86400 then
          s:finding(F.make("SIGNING_CERT_EXPIRES_SOON", { subject = c.subject, not_after = day(c.not_after) }))
        end
        s:ok(string.format("signed by %s until %s, SignatureCheck %s", c.subject, day(c.not_after), tostring(c.signature_ok)))
      end },
    { name = "nitro-cli", timeout = 60,
      when = function() return info ~= nil end,
      run = function(s)
        -- When nitro-cli is installed, its describe-eif must agree with what nitrodiag computed.
        local nitro = require "nd.nitro"
        local d, err, code = nitro.describe_eif(s.args.file, { timeout = 50 })
        if not d then
          if code == "ENOENT" or code == "EACCES" then return s:skip("nitro-cli is not available: " .. err) end
          s:finding{ code = "NITRO_DESCRIBE_EIF", severity = "warn", message = "nitro-cli describe-eif failed: " .. err }
          return
        end
        local diffs = {}
        for _, k in ipairs({ "PCR0", "PCR1", "PCR2", "PCR8" }) do
          local mine, theirs = info.Measurements[k], type(d.Measurements) == "table" and d.Measurements[k] or nil
          if mine ~= theirs and (mine or theirs) then
            diffs[#diffs + 1] = string.format("%s: nitrodiag %s, nitro-cli %s", k, tostring(mine), tostring(theirs))
          end
        end
        if d.CheckCRC ~= nil and d.CheckCRC ~= info.CheckCRC then
          diffs[#diffs + 1] = string.format("CheckCRC: nitrodiag %s, nitro-cli %s", tostring(info.CheckCRC), tostring(d.CheckCRC))
        end
        if #diffs > 0 then
          s:finding{ code = "EIF_MEASUREMENTS_DIFFER", severity = "warn",
                     message = "nitro-cli describe-eif disagrees with nitrodiag's computation", evidence = diffs,
                     remediation = "report it with the EIF's describe-eif output: one of the two tools is wrong" }
        else
          s:ok("nitro-cli describe-eif agrees (PCRs, CheckCRC)")
        end
      end },
    { name = "memory", timeout = 10,
      when = function() return info ~= nil end,
      run = function(s)
        local min = info.min_memory_mib
        s:log(string.format("minimum --memory: %d MiB (ceil(%d B / 1 MiB) x 4)", min, info.file_size))
        if s.args.memory and s.args.memory < min then
          local f = findings.make("ENCLAVE_MEMORY_BELOW_EIF", { memory_mib = s.args.memory, min_memory_mib = min })
          f.message = f.message .. ": run-enclave would fail with E26"
          s:finding(f)
        end
        local cfg, err = allocator.load()
        if cfg and cfg.memory_mib then
          s.data.allocator_memory = cfg.memory_mib
          if cfg.memory_mib < min then
            local f = findings.make("ALLOCATOR_MEMORY_TOO_SMALL",
              { memory_mib = math.max(min, s.args.memory or 0), severity = "warn" })
            f.message = string.format("allocator.yaml reserves memory_mib %d, less than this EIF's minimum %d "
              .. "MiB: any run that passes the 4x rule fails with E27", cfg.memory_mib, min)
            s:finding(f)
          end
        elseif err then
          s:log("allocator.yaml: " .. tostring(err))
        end
        s:ok(string.format("minimum --memory %d MiB", min))
      end },
  },
  report = function(result)
    if not info then return nil end
    for _, k in ipairs(DESCRIBE_KEYS) do
      if info[k] ~= nil then result[k] = info[k] end
    end
    if result.Measurements then json.ordered(result.Measurements, { "HashAlgorithm", "PCR0", "PCR1", "PCR2", "PCR8" }) end
    local secs = json.array({})
    for _, sec in ipairs(info.sections) do
      secs[#secs + 1] = json.ordered({ type = sec.name, offset = sec.offset, size = sec.size, flags = sec.flags },
        { "type", "offset", "size", "flags" })
    end
    result.eif = { path = info.path, file_size = info.file_size, arch = info.arch, default_mem = info.default_mem,
                   default_cpus = info.default_cpus, sections = secs, crc_stored = info.crc_stored,
                   crc_computed = info.crc_computed, min_memory_mib = info.min_memory_mib, cmdline = info.cmdline,
                   trailing_bytes = info.trailing_bytes, signing_certificate = info.signing }
    local L = lines
    L[#L + 1] = string.format("%s", info.path)
    L[#L + 1] = string.format("  size            %d bytes (%s)", info.file_size, human_size(info.file_size))
    L[#L + 1] = string.format("  EIF version     %d (%s)", info.version, info.arch)
    L[#L + 1] = string.format("  default memory  %d, default CPUs %d (header fields)", info.default_mem, info.default_cpus)
    L[#L + 1] = string.format("  CRC32           %s (%s)", info.crc_stored, info.crc_ok and "matches: CheckCRC true"
      or ("MISMATCH: content gives " .. info.crc_computed))
    L[#L + 1] = string.format("  signed          %s", info.is_signed and "yes" or "no")
    if info.signing then
      local c = info.signing
      L[#L + 1] = string.format("  signing cert    %s (issuer %s), valid %s .. %s, SignatureCheck %s", c.subject, c.issuer,
        os.date("!%Y-%m-%d", c.not_before), os.date("!%Y-%m-%d", c.not_after), tostring(c.signature_ok))
    end
    L[#L + 1] = "  sections:"
    for _, sec in ipairs(info.sections) do
      L[#L + 1] = string.format("    %2d  %-9s at %-10d %12d bytes (%s)", sec.index, sec.name, sec.offset, sec.size,
        human_size(sec.size))
    end
    if info.cmdline then L[#L + 1] = "  kernel cmdline  " .. info.cmdline end
    L[#L + 1] = "  measurements (SHA-384):"
    for _, k in ipairs({ "PCR0", "PCR1", "PCR2", "PCR8" }) do
      if info.Measurements[k] then L[#L + 1] = string.format("    %s  %s", k, info.Measurements[k]) end
    end
    if info.ImageName or info.ImageVersion then
      L[#L + 1] = string.format("  image           %s %s", tostring(info.ImageName or "?"), tostring(info.ImageVersion or ""))
    end
    if type(info.Metadata) == "table" then
      for _, k in ipairs({ "BuildTool", "BuildToolVersion", "BuildTime", "OperatingSystem", "KernelVersion" }) do
        if info.Metadata[k] ~= nil then L[#L + 1] = string.format("  %-17s %s", k, tostring(info.Metadata[k])) end
      end
    end
    L[#L + 1] = string.format("  minimum memory  %d MiB: run-enclave --memory below this fails with E26", info.min_memory_mib)
    return table.concat(L, "\n")
  end,
}
