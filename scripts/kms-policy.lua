-- scripts/kms-policy.lua — `nitrodiag kms-policy POLICY.json [eif=… | attest=… | pcr0=… …] [role_arn=…]
-- [instance_id=…] [cert=…]`: will this enclave get its key? Evaluates a KMS key policy for the calls an enclave makes
-- with a Recipient (Decrypt, GenerateDataKey, GenerateDataKeyPair, GenerateRandom, DeriveSharedSecret) against the
-- measurements of an EIF (computed as nitro-cli does), of an attestation document, or given by hand, with IAM's
-- documented evaluation logic (nd.keypolicy): which statements apply, whether the kms:RecipientAttestation conditions
-- match, and the outcome — allowed, denied by an explicit Deny, or not allowed — quoting the deciding statement.
-- It also flags what operators get wrong: misspelled keys and operators, values that can never match, PCR3/PCR4
-- computed from the role ARN / instance id (SHA384 of 48 zero bytes then the string, as the AWS user guide says),
-- PCR8 from the signing certificate, an Allow without attestation conditions, a Deny that blocks the enclave too,
-- a policy that allows only calls without a Recipient, and conditions a debug-mode enclave can never meet.
local kp = require "nd.keypolicy"
local attest = require "nd.attest"
local eif = require "nd.eif"
local fs = require "nd.fs"
local json = require "nd.json"
local F = require "nd.findings"

local ZERO = string.rep("0", 96)
local codec = require "nd.codec"

-- Common ways of computing PCR3/PCR4/PCR8 wrongly, for a value the policy holds: a hint naming the mistake, or nil.
-- inputs: role_arn, instance_id, cert_der, cert_pem (any may be nil).
local function misunderstood(index, value, inputs)
  value = value:lower()
  local forms = {}
  local function add(data, what) if data then forms[#forms + 1] = { data, what } end end
  if index == 3 and inputs.role_arn then
    add(codec.sha384(inputs.role_arn), "SHA384 of the role ARN without the 48 zero bytes first")
    add(attest.pcr_extend(inputs.role_arn .. "\n"), "the role ARN with a trailing newline (echo without -n)")
    local acct, name = inputs.role_arn:match("^arn:aws[%w-]*:iam::(%d+):role/(.+)$")
    if acct then
      add(attest.pcr_extend("arn:aws:iam::" .. acct .. ":instance-profile/" .. name), "the instance profile's ARN, not the role's")
    end
  elseif index == 4 and inputs.instance_id then
    add(codec.sha384(inputs.instance_id), "SHA384 of the instance id without the 48 zero bytes first")
    add(attest.pcr_extend(inputs.instance_id .. "\n"), "the instance id with a trailing newline (echo without -n)")
  elseif index == 8 and inputs.cert_der then
    add(codec.sha384(inputs.cert_der), "SHA384 of the certificate, not extended (PCR8 = SHA384(48 zero bytes ‖ SHA384(DER)))")
    add(inputs.cert_pem and codec.sha384(inputs.cert_pem), "SHA384 of the PEM file")
    add(inputs.cert_pem and attest.pcr_extend(codec.sha384(inputs.cert_pem):gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)),
      "the PEM file extended instead of the DER")
  end
  for _, f in ipairs(forms) do
    if f[1] == value then return "the policy's value is " .. f[2] end
  end
end
local pol, meas, decisions = nil, nil, {}

local function quote(st) return json.encode(st.raw) end

local function is_debug(m)
  return m[0] == ZERO and m[1] == ZERO and m[2] == ZERO
end

local function add_ctx_statement(f, st)
  if st then f.evidence[#f.evidence + 1] = "statement " .. st.sid .. ": " .. quote(st) end
  return f
end

return {
  name = "kms-policy",
  description = "Evaluate a KMS key policy for an enclave's calls against an EIF, an attestation document or given PCRs",
  categories = { "kms", "attestation" },
  args = {
    { name = "policy", type = "string", positional = 1, required = true, help = "the key policy (aws kms get-key-policy … --output text)" },
    { name = "eif", type = "string", help = "the enclave image: PCR0, PCR1, PCR2 (and PCR8 when signed)" },
    { name = "attest", type = "string", help = "an attestation document (CBOR, hex or base64) from the enclave" },
    { name = "pcr0", type = "string", help = "PCR0 (= ImageSha384), 96 hex digits" },
    { name = "pcr1", type = "string", help = "PCR1" },
    { name = "pcr2", type = "string", help = "PCR2" },
    { name = "pcr3", type = "string", help = "PCR3 (or role_arn=)" },
    { name = "pcr4", type = "string", help = "PCR4 (or instance_id=)" },
    { name = "pcr8", type = "string", help = "PCR8 (or cert=)" },
    { name = "role_arn", type = "string", help = "the parent instance's IAM role ARN: PCR3, and the caller for Principal" },
    { name = "instance_id", type = "string", help = "the parent instance id (i-…): PCR4" },
    { name = "cert", type = "string", help = "the EIF signing certificate (PEM): PCR8" },
    { name = "action", type = "list", help = "the calls to check (default: the enclave calls the policy mentions)" },
  },
  deadline = 120,
  steps = {
    { name = "policy", timeout = 10,
      run = function(s)
        local text, err = fs.read(s.args.policy)
        if not text then s:finding(F.make("KMS_POLICY_UNREADABLE", { reason = s.args.policy .. ": " .. tostring(err) })) return end
        local p, perr = kp.parse(text)
        if not p then s:finding(F.make("KMS_POLICY_UNREADABLE", { reason = perr })) return end
        pol = p
        for _, issue in ipairs(kp.lint(pol)) do
          s:finding(add_ctx_statement(F.make(issue.code, issue.vars), issue.statement))
        end
        s:ok(string.format("%d statements", #pol.statements))
      end },
    { name = "measurements", timeout = 100,
      when = function() return pol ~= nil end,
      run = function(s)
        local a = s.args
        local m, src = { unknown = {} }, {}
        local function set(i, v, from)
          if v == nil then return end
          v = v:lower():gsub("%s", "")
          if not v:match("^%x+$") or #v ~= 96 then
            s:fail(string.format("PCR%d from %s is not 96 hex digits: %s", i, from, v))
            return
          end
          m[i], src[i] = v, from
        end
        if a.attest then
          local raw, err = fs.read(a.attest)
          local bytes = raw and attest.decode(raw)
          local v, verr = bytes and attest.verify(bytes)
          if not v then
            s:finding(F.make("ATTEST_UNREADABLE", { reason = tostring(verr or err or "cannot decode the document") }))
            return
          end
          if not v.verified then
            s:finding(F.make("ATTEST_" .. v.code:upper(), { reason = v.reason .. " — KMS rejects such a document whatever the policy says" }))
          end
          for i = 0, 31 do if v.pcrs[i] then set(i, v.pcrs[i], "the attestation document") end end
          s.data.module_id = v.module_id
        elseif a.eif then
          local info, err = eif.read(a.eif)
          if not info then s:fail(tostring(err)) return end
          set(0, info.pcrs.PCR0, "the EIF")
          set(1, info.pcrs.PCR1, "the EIF")
          set(2, info.pcrs.PCR2, "the EIF")
          set(8, info.pcrs.PCR8 or ZERO, info.pcrs.PCR8 and "the EIF's signing certificate" or "the EIF (unsigned: PCR8 is zero)")
          for _, i in ipairs({ 5, 6, 7, 9, 10, 11, 12, 13, 14, 15 }) do set(i, ZERO, "the NSM (not extended)") end
        end
        for _, i in ipairs({ 0, 1, 2, 3, 4, 8 }) do set(i, a["pcr" .. i], "pcr" .. i .. "=") end
        if a.role_arn then
          local v = attest.pcr_extend(a.role_arn)
          if m[3] and m[3] ~= v then
            s:finding(F.make("KMS_POLICY_PCR3_NOT_ROLE", { source = src[3], actual = m[3], role_arn = a.role_arn,
              expected = v, why = m[3] == ZERO and "the parent instance had no IAM role when the enclave started"
                or "the enclave runs on an instance with another role" }))
          elseif not m[3] then
            set(3, v, "role_arn=" .. a.role_arn)
          end
        end
        if a.instance_id then
          local v = attest.pcr_extend(a.instance_id)
          if m[4] and m[4] ~= v then
            s:finding(F.make("KMS_POLICY_PCR4_NOT_INSTANCE", { source = src[4], actual = m[4],
              instance_id = a.instance_id, expected = v }))
          elseif not m[4] then
            set(4, v, "instance_id=" .. a.instance_id)
          end
        end
        if a.cert then
          local pem, err = fs.read(a.cert)
          local v, perr = pem and eif.pcr8(pem)
          if not v then s:fail("cert: " .. tostring(perr or err)) return end
          if m[8] and m[8] ~= v then
            s:finding(F.make("KMS_POLICY_PCR8_NOT_CERT", { source = src[8], actual = m[8], cert = a.cert, expected = v }))
          elseif not m[8] or src[8]:match("unsigned") then
            set(8, v, "cert=" .. a.cert)
          end
        end
        for i = 0, 15 do if not m[i] then m.unknown[i] = true end end
        s.data.inputs = { role_arn = a.role_arn, instance_id = a.instance_id }
        if a.cert then
          local pem = fs.read(a.cert)
          s.data.inputs.cert_pem = pem
          s.data.inputs.cert_der = pem and (pem:match("^%-%-%-%-%-BEGIN") and codec.b64decode(
            (pem:match("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-(.-)%-%-%-%-%-END") or ""):gsub("%s", "")) or pem)
        end
        if not (m[0] or m[1] or m[2]) then
          s:log("no PCR0-2 given (eif=, attest= or pcr0=): image conditions cannot be evaluated")
        end
        meas = { m = m, src = src }
        local known = {}
        for i = 0, 15 do if m[i] then known[#known + 1] = "PCR" .. i end end
        s:ok(#known > 0 and ("known: " .. table.concat(known, " ")) or "no measurements: only the policy's text is checked")
      end },
    { name = "evaluate", timeout = 10,
      when = function() return pol ~= nil and meas ~= nil end,
      run = function(s)
        local m, src = meas.m, meas.src
        local opts = { principal = s.args.role_arn }
        -- PCR conditions against the measurements (the most precise explanation of a refusal)
        for _, e in ipairs(kp.expectations(pol)) do
          local have = m[e.index]
          if have and e.effect == "Allow" and not e.like then
            local hit = false
            for _, v in ipairs(e.values) do
              local pv = tostring(v)
              if (e.nocase and pv:lower() == have) or pv == have then hit = true end
            end
            local hint
            for _, v in ipairs(e.values) do hint = hint or misunderstood(e.index, tostring(v), s.data.inputs or {}) end
            if not hit then
              s:finding(add_ctx_statement(F.make("KMS_POLICY_PCR_MISMATCH", { sid = e.sid, key = e.key, fix = hint,
                expected = table.concat((function() local t = {} for _, v in ipairs(e.values) do t[#t + 1] = tostring(v) end return t end)(), " or "),
                actual = have, source = src[e.index] and (" (from " .. src[e.index] .. ")") or "" }), e.statement))
            end
          end
        end
        local actions = s.args.action and #s.args.action > 0 and s.args.action or nil
        if not actions then
          actions = {}
          for _, act in ipairs(kp.ENCLAVE_ACTIONS) do
            if kp.covers(pol, act) then actions[#actions + 1] = act end
          end
          if #actions == 0 then actions = { "kms:Decrypt" } end
        end
        local debug = is_debug(m)
        local dm = {}
        for i = 0, 31 do dm[i] = m[i] end
        dm.unknown = m.unknown
        dm[0], dm[1], dm[2] = ZERO, ZERO, ZERO
        local debug_blocks = {}
        for _, act in ipairs(actions) do
          local r = kp.evaluate(pol, act, kp.context(m), opts)
          local plain = kp.evaluate(pol, act, kp.context(m, { recipient = false }), opts)
          local d = { action = act, outcome = r.outcome, statement = r.statement and r.statement.sid or nil,
                      quoted = r.statement and quote(r.statement) or nil, why = r.why, without_recipient = plain.outcome }
          decisions[#decisions + 1] = d
          if r.outcome == "allowed" then
            local f = add_ctx_statement(F.make("KMS_POLICY_ALLOWED", { action = act, sid = r.statement.sid }), r.statement)
            if r.delegated then
              f.message = f.message .. " (its Principal is the account: an IAM policy of the caller must allow it too)"
            end
            s:finding(f)
            if not debug then
              local rd = kp.evaluate(pol, act, kp.context(dm), opts)
              if rd.outcome ~= "allowed" then debug_blocks[#debug_blocks + 1] = act end
            end
          elseif r.outcome == "denied" then
            local code = kp.has_attestation_condition(r.statement) and "KMS_POLICY_EXPLICIT_DENY" or "KMS_POLICY_DENY_BLOCKS_ENCLAVE"
            local _, why = kp.eval_condition(r.statement.raw.Condition, kp.context(m))
            s:finding(add_ctx_statement(F.make(code, { action = act, sid = r.statement.sid,
              why = code == "KMS_POLICY_DENY_BLOCKS_ENCLAVE" and ": it has no kms:RecipientAttestation condition" or "" }), r.statement))
          elseif r.outcome == "unknown" then
            s:finding(add_ctx_statement(F.make("KMS_POLICY_UNKNOWN", { action = act, why = r.why }), r.statement))
          elseif plain.outcome == "allowed" then
            s:finding(add_ctx_statement(F.make("KMS_POLICY_ONLY_NON_RECIPIENT", { action = act }), plain.statement))
          else
            local f = F.make("KMS_POLICY_NOT_ALLOWED", { action = act,
              why = r.misses and #r.misses > 0 and (" (" .. r.misses[1] .. ")") or "" }, r.misses)
            s:finding(f)
          end
          if debug and r.outcome ~= "allowed" then
            s:finding(F.make("KMS_POLICY_DEBUG_MODE", { severity = "fail",
              detail = act .. " is refused and the enclave runs in debug mode (PCR0-2 all zero)" }))
          end
        end
        if #debug_blocks > 0 then
          s:finding(F.make("KMS_POLICY_DEBUG_MODE", { severity = "info",
            detail = "the conditions that allow " .. table.concat(debug_blocks, ", ") .. " hold only for this image" }))
        end
        local allowed = 0
        for _, d in ipairs(decisions) do if d.outcome == "allowed" then allowed = allowed + 1 end end
        s:ok(string.format("%d of %d calls allowed", allowed, #decisions))
      end },
  },
  report = function(result)
    if not pol then return nil end
    local arr = json.array({})
    for _, d in ipairs(decisions) do
      arr[#arr + 1] = json.ordered(d, { "action", "outcome", "statement", "why", "without_recipient", "quoted" })
    end
    result.decisions = arr
    if meas then
      local p = {}
      for i = 0, 31 do if meas.m[i] then p[tostring(i)] = meas.m[i] end end
      result.measurements = p
    end
    local L = {}
    for _, d in ipairs(decisions) do
      L[#L + 1] = string.format("%-26s %-12s %s", d.action, d.outcome:upper():gsub("_", " "),
        d.statement and ("statement " .. d.statement) or (d.why or ""))
      if d.quoted then L[#L + 1] = "    " .. d.quoted end
    end
    return table.concat(L, "\n")
  end,
}
