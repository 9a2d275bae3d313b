-- scripts/attest.lua — `nitrodiag attest FILE|-`: verifies a Nitro attestation document offline (raw CBOR, hex or
-- base64, COSE tag 18 or not, or inside a KMS Recipient / JSON reply): the ES384 signature of the document's certificate over the COSE Sig_structure, the
-- chain certificate → cabundle (last to first) → the pinned AWS Nitro Enclaves root, every certificate's validity at
-- the document's own time (and whether it still holds now), CA constraints and field types and sizes (core/attest.c,
-- core/attestverify.c with OpenSSL and libcbor). Shows module_id, the time, PCRs 0-4 and 8 with what each measures,
-- debug mode, the public key, user_data, nonce and the chain. Exit 0 verified, 1 not, 2 usage.
local attest = require "nd.attest"
local codec = require "nd.codec"
local fs = require "nd.fs"
local json = require "nd.json"
local F = require "nd.findings"

local MAX_INPUT = 1024 * 1024
local SHOWN = { 0, 1, 2, 3, 4, 8 }

local doc -- attest.verify's result

local function read_input(path)
  if path == "-" then
    local data = io.stdin:read(MAX_INPUT + 1) or ""
    if #data > MAX_INPUT then return nil, "stdin: more than 1 MiB, too large for an attestation document" end
    return data
  end
  local st = require("luv").fs_stat(path)
  if not st then return nil, path .. ": no such file" end
  if st.type ~= "file" then return nil, path .. ": not a regular file" end
  if st.size > MAX_INPUT then return nil, path .. ": more than 1 MiB, too large for an attestation document" end
  return fs.read(path)
end

-- A KMS request body or its Recipient ({"Recipient": {"AttestationDocument": "<base64>"}}) or an enclave's JSON reply
-- ({"attestation_doc": "<base64>"}) holds the document in a field: take it from there.
local function from_json(text)
  if not text:match("^%s*{") then return text end
  local doc = json.decode(text)
  if type(doc) ~= "table" then return text end
  local function find(t, depth)
    for _, k in ipairs({ "AttestationDocument", "attestation_doc", "attestation_document", "attestationDocument",
                         "document" }) do
      if type(t[k]) == "string" then return t[k] end
    end
    if depth < 3 then
      for _, v in pairs(t) do
        if type(v) == "table" then
          local r = find(v, depth + 1)
          if r then return r end
        end
      end
    end
  end
  return find(doc, 0) or text
end

local function printable(b)
  if not b then return nil end
  if b:match("^[%g ]*$") then return string.format("%q", b) end
  return codec.hex(b)
end

return {
  name = "attest",
  description = "Verify a Nitro attestation document offline: signature, chain to the AWS root, times, PCRs (file or -)",
  categories = { "kms", "attestation" },
  args = {
    { name = "file", type = "string", positional = 1, required = true, help = "the document (CBOR, hex or base64), or - for stdin" },
    { name = "root", type = "string", help = "a PEM root to verify against instead of the AWS Nitro root (development PKI)" },
    { name = "nonce", type = "string", help = "the nonce the document must carry, in hex" },
    { name = "now", type = "integer", help = "check 'still valid now' at this unix time instead of the clock" },
  },
  deadline = 30,
  steps = {
    { name = "verify", timeout = 20, required = true,
      run = function(s)
        local raw, err = read_input(s.args.file)
        if not raw then
          s:finding(F.make("ATTEST_UNREADABLE", { reason = err }))
          return
        end
        local bytes, derr = attest.decode(from_json(raw))
        if not bytes then
          s:finding(F.make("ATTEST_UNREADABLE", { reason = derr }))
          return
        end
        local opts = { now = s.args.now }
        if s.args.root then
          local pem, perr = fs.read(s.args.root)
          if not pem then s:fail("root: " .. tostring(perr)) return end
          opts.root = pem
        end
        if s.args.nonce then
          local hex = s.args.nonce:gsub("%s", "")
          local n, nerr = codec.unhex(hex)
          if not n then s:fail("nonce: " .. tostring(nerr)) return end
          opts.nonce = n
        end
        local v, verr, vcode = attest.verify(bytes, opts)
        if not v then
          if vcode == "EINVAL" then s:fail("root=" .. tostring(s.args.root) .. ": " .. tostring(verr)) return end
          s:finding(F.make("ATTEST_UNREADABLE", { reason = verr }))
          return
        end
        doc = v
        if v.dev then
          s:finding(F.make("ATTEST_DEV_DOCUMENT", { module_id = v.module_id }))
        end
        if not v.verified then
          local key = "ATTEST_" .. v.code:upper()
          s:finding(F.make(F.get(key) and key or "ATTEST_CHAIN", { reason = v.reason }))
          return
        end
        if not v.valid_now then
          s:finding(F.make("ATTEST_STALE", { reason = v.now_reason or "the chain is no longer valid" }))
        end
        s:ok(string.format("verified: %s at %s, chain of %d to %s", v.module_id, v.time, #v.chain,
          s.args.root and ("root " .. v.root_sha256:sub(1, 16) .. "…") or "AWS_NitroEnclaves_Root-G1"))
      end },
    { name = "measurements", timeout = 5,
      when = function() return doc ~= nil end,
      run = function(s)
        if doc.debug then s:finding(F.make("ATTEST_DEBUG_MODE", {})) end
        local pk = doc.public_key_info
        if pk and not (pk.type == "RSA" and (pk.bits or 0) >= 2048) then
          s:finding(F.make("ATTEST_PUBLIC_KEY_NOT_RSA", { pk_type = pk.type, pk_bits = pk.bits and (" " .. pk.bits) or "" },
            { "public_key SHA-256 " .. pk.sha256 }))
        end
        s:ok(doc.debug and "debug mode (PCR0-2 all zero)" or ("PCR0 " .. tostring(doc.pcrs[0])))
      end },
  },
  report = function(result)
    if not doc then return nil end
    local pcrs = {}
    for i, v in pairs(doc.pcrs) do pcrs[tostring(i)] = v end
    local chain = json.array({})
    for _, c in ipairs(doc.chain) do
      chain[#chain + 1] = json.ordered({ role = c.role, subject = c.subject, issuer = c.issuer, not_before = c.not_before,
        not_after = c.not_after, is_ca = c.is_ca, sha256 = c.sha256 },
        { "role", "subject", "issuer", "not_before", "not_after", "is_ca", "sha256" })
    end
    local instance, enclave = doc.module_id:match("^(i%-%x+)%-(enc%x+)$")
    result.attestation = json.ordered({
      verified = doc.verified, code = doc.code, reason = doc.reason, valid_now = doc.valid_now, now_reason = doc.now_reason,
      module_id = doc.module_id, instance_id = instance, enclave_id = enclave, timestamp = doc.timestamp, time = doc.time,
      digest = doc.digest, debug = doc.debug, pcrs = pcrs,
      public_key = doc.public_key_info, user_data = doc.user_data and codec.hex(doc.user_data) or nil,
      nonce = doc.nonce and codec.hex(doc.nonce) or nil, root_sha256 = doc.root_sha256, chain = chain,
    }, { "verified", "code", "reason", "valid_now", "now_reason", "module_id", "instance_id", "enclave_id", "timestamp",
         "time", "digest", "debug", "pcrs", "public_key", "user_data", "nonce", "root_sha256", "chain" })
    local L = {}
    L[#L + 1] = doc.verified and "VERIFIED" or ("NOT VERIFIED: " .. tostring(doc.reason))
    if doc.verified and not doc.valid_now then L[#L + 1] = "  (no longer valid now: " .. tostring(doc.now_reason) .. ")" end
    L[#L + 1] = string.format("  module_id   %s%s", doc.module_id,
      instance and string.format(" (instance %s, enclave %s)", instance, enclave) or "")
    L[#L + 1] = string.format("  time        %s (%d ms)", doc.time or "?", doc.timestamp)
    L[#L + 1] = string.format("  debug mode  %s", doc.debug and "YES (PCR0-2 all zero: KMS conditions on them never match)" or "no")
    for _, i in ipairs(SHOWN) do
      if doc.pcrs[i] then
        L[#L + 1] = string.format("  PCR%-2d %-36s %s", i, attest.pcr_meaning(i), doc.pcrs[i])
      end
    end
    local pk = doc.public_key_info
    if pk then
      L[#L + 1] = string.format("  public_key  %s%s, %d bytes, SPKI SHA-256 %s", pk.type, pk.bits and (" " .. pk.bits) or "",
        pk.size, pk.sha256)
    else
      L[#L + 1] = "  public_key  none"
    end
    L[#L + 1] = "  user_data   " .. (printable(doc.user_data) or "none")
    L[#L + 1] = "  nonce       " .. (printable(doc.nonce) or "none")
    L[#L + 1] = "  chain:"
    for _, c in ipairs(doc.chain) do
      L[#L + 1] = string.format("    %-12s %s  [%s .. %s]%s", c.role, c.subject, c.not_before or "?", c.not_after or "?",
        c.is_ca and " CA" or "")
    end
    return table.concat(L, "\n")
  end,
}
