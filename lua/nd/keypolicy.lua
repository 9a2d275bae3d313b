-- nd.keypolicy — a KMS key policy evaluated for the calls an enclave makes, offline, following the documented IAM
-- policy evaluation logic: an explicit Deny beats any Allow, an Allow is needed (default deny); within a Condition
-- block every operator and every key must hold (AND), the values of one key are alternatives (OR), negated operators
-- hold when none of their values match; a missing key fails positive operators and satisfies negated ones, …IfExists
-- holds when the key is missing, Null tests presence; ForAnyValue / ForAllValues apply the operator to each value of
-- the (here single- or zero-valued) context key, ForAllValues holding for no value; condition key names are
-- case-insensitive, String operators compare case-sensitively unless …IgnoreCase, StringLike has * and ?.
-- Values not known (PCR3 without a role ARN, an aws:* key) make a result "unknown" rather than a guess.
--
--   local kp = require "nd.keypolicy"
--   local pol = assert(kp.parse(json_text))
--   local ctx = kp.context{ [0] = pcr0_hex, [1] = …, known = { [3] = false } }  -- a call with a Recipient
--   local r = kp.evaluate(pol, "kms:Decrypt", ctx, { principal = role_arn })
--   -- r.outcome: "allowed" | "denied" | "not_allowed" | "unknown"; r.statement (the deciding one); r.why
--   for _, issue in ipairs(kp.lint(pol)) do … end                 -- {code, vars} for nd.findings
local json = require "nd.json"

local M = {}

-- The calls an enclave makes with a Recipient (AWS KMS developer guide, "How AWS Nitro Enclaves uses AWS KMS").
M.ENCLAVE_ACTIONS = { "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair", "kms:GenerateRandom",
                      "kms:DeriveSharedSecret" }
M.UNKNOWN = setmetatable({}, { __tostring = function() return "unknown" end })
local UNKNOWN = M.UNKNOWN
local ATT = "kms:recipientattestation:"

local function lower(s) return type(s) == "string" and s:lower() or s end

local function list(v)
  if v == nil or v == json.null then return {} end
  if type(v) == "table" and (#v > 0 or next(v) == nil) then return v end
  return { v }
end

-- glob: * and ? as in IAM (and Action matching); plain otherwise
local function glob_match(pattern, s, nocase)
  if nocase then pattern, s = pattern:lower(), s:lower() end
  local p = "^" .. pattern:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
  return s:find(p) ~= nil
end

-- parse(text) -> policy {statements = {…}} | nil, msg
function M.parse(text)
  local doc, derr = json.decode(text)
  if type(doc) ~= "table" then
    return nil, doc == nil and ("the policy is not JSON: " .. tostring(derr)) or "the policy is not a JSON object"
  end
  local sts = doc.Statement
  if sts == nil then return nil, "the policy has no Statement" end
  if type(sts) ~= "table" then return nil, "Statement is not a list of statements" end
  if sts.Effect then sts = { sts } end
  local out = { version = doc.Version, statements = {} }
  for i, st in ipairs(sts) do
    if type(st) ~= "table" then return nil, string.format("statement %d is not an object", i) end
    if st.Effect ~= "Allow" and st.Effect ~= "Deny" then
      return nil, string.format("statement %s has Effect %s (want Allow or Deny)", st.Sid or i, tostring(st.Effect))
    end
    if st.Condition ~= nil and type(st.Condition) ~= "table" then
      return nil, string.format("statement %s: Condition is not an object", st.Sid or i)
    end
    out.statements[#out.statements + 1] = { index = i, sid = type(st.Sid) == "string" and st.Sid ~= "" and st.Sid or ("#" .. i),
      raw = st, effect = st.Effect }
  end
  return out
end

-- ---- context -------------------------------------------------------------------------------------------------------
-- context(m, opts) -> the condition keys a call with a Recipient carries. m: {[i] = hex, …}; m.unknown = {[i]=true}
-- for PCRs whose value is not known. opts.recipient = false gives the context of a call without a Recipient.
function M.context(m, opts)
  local ctx = {}
  if opts and opts.recipient == false then return ctx end
  for i = 0, 31 do
    local v = m[i]
    if m.unknown and m.unknown[i] then v = UNKNOWN end
    if v ~= nil then ctx[ATT .. "pcr" .. i] = v == UNKNOWN and v or v:lower() end
  end
  if ctx[ATT .. "pcr0"] ~= nil then ctx[ATT .. "imagesha384"] = ctx[ATT .. "pcr0"] end
  for k, v in pairs((opts and opts.extra) or {}) do ctx[k:lower()] = v end
  return ctx
end

-- ---- operators -----------------------------------------------------------------------------------------------------
local BASE = {
  StringEquals = { cmp = function(a, b) return a == b end },
  StringNotEquals = { cmp = function(a, b) return a == b end, neg = true },
  StringEqualsIgnoreCase = { cmp = function(a, b) return a:lower() == b:lower() end },
  StringNotEqualsIgnoreCase = { cmp = function(a, b) return a:lower() == b:lower() end, neg = true },
  StringLike = { cmp = function(v, pat) return glob_match(pat, v) end },
  StringNotLike = { cmp = function(v, pat) return glob_match(pat, v) end, neg = true },
  ArnEquals = { cmp = function(a, b) return a == b end },
  ArnLike = { cmp = function(v, pat) return glob_match(pat, v) end },
  ArnNotEquals = { cmp = function(a, b) return a == b end, neg = true },
  ArnNotLike = { cmp = function(v, pat) return glob_match(pat, v) end, neg = true },
  Bool = { cmp = function(a, b) return a:lower() == b:lower() end },
  Null = { null = true },
}
-- Operators IAM has that this evaluator does not compute (numbers, dates, IPs, binary): "unknown" results.
local OTHER = { NumericEquals = 1, NumericNotEquals = 1, NumericLessThan = 1, NumericLessThanEquals = 1,
  NumericGreaterThan = 1, NumericGreaterThanEquals = 1, DateEquals = 1, DateNotEquals = 1, DateLessThan = 1,
  DateLessThanEquals = 1, DateGreaterThan = 1, DateGreaterThanEquals = 1, IpAddress = 1, NotIpAddress = 1,
  BinaryEquals = 1 }

-- parse_op("ForAnyValue:StringEqualsIgnoreCase") -> {set = "any"|"all"|nil, base = name, ifexists = bool} | nil
function M.parse_op(op)
  local set, rest = op:match("^(ForAnyValue):(.+)$")
  if not set then set, rest = op:match("^(ForAllValues):(.+)$") end
  rest = rest or op
  local base = rest:match("^(.-)IfExists$")
  local ifexists = base ~= nil
  if not base then base = rest end
  if not (BASE[base] or OTHER[base]) or (base == "Null" and (ifexists or set)) then return nil end
  return { set = set == "ForAnyValue" and "any" or set == "ForAllValues" and "all" or nil, base = base,
           ifexists = ifexists, computed = BASE[base] ~= nil }
end

local function any_true(results)
  local unk = false
  for _, r in ipairs(results) do
    if r == true then return true end
    if r == UNKNOWN then unk = true end
  end
  return unk and UNKNOWN or false
end

local function all_true(results)
  local unk = false
  for _, r in ipairs(results) do
    if r == false then return false end
    if r == UNKNOWN then unk = true end
  end
  return unk and UNKNOWN or true
end

-- one context value against the policy values under a (non-Null) operator: true/false
local function value_matches(def, v, values)
  local hit = false
  for _, pv in ipairs(values) do
    if def.cmp(v, tostring(pv)) then hit = true break end
  end
  if def.neg then return not hit end
  return hit
end

-- eval_key(op, key, values, ctx) -> true | false | UNKNOWN
function M.eval_key(o, key, values, ctx)
  local v = ctx[key:lower()]
  if o.base == "Null" then
    local want_absent = tostring(values[1]):lower() == "true"
    return (v == nil) == want_absent
  end
  if not o.computed then return UNKNOWN end
  local def = BASE[o.base]
  if v == UNKNOWN then return UNKNOWN end
  if o.set == "any" then
    if v == nil then return false end
    return value_matches(def, v, values)
  elseif o.set == "all" then
    if v == nil then return true end
    return value_matches(def, v, values)
  end
  if v == nil then
    if o.ifexists then return true end
    return def.neg and true or false
  end
  return value_matches(def, v, values)
end

-- eval_condition(raw Condition, ctx) -> result, why (the first key that does not hold), unknown_keys
function M.eval_condition(cond, ctx)
  if cond == nil or cond == json.null then return true end
  local results, why, unknown = {}, nil, {}
  local ops = {}
  for op in pairs(cond) do ops[#ops + 1] = op end
  table.sort(ops)
  for _, op in ipairs(ops) do
    local o = M.parse_op(op)
    local keys = {}
    for k in pairs(type(cond[op]) == "table" and cond[op] or {}) do keys[#keys + 1] = k end
    table.sort(keys)
    if not o then
      results[#results + 1] = false
      why = why or string.format("%s is not an IAM condition operator", op)
    else
      for _, k in ipairs(keys) do
        local vals = list(cond[op][k])
        local r = M.eval_key(o, k, vals, ctx)
        results[#results + 1] = r
        if r == false and not why then
          local cv = ctx[k:lower()]
          why = string.format("%s %s %s: the call has %s", op, k, json.encode(cond[op][k]),
            cv == nil and "no such key" or cv)
        elseif r == UNKNOWN then
          unknown[#unknown + 1] = k
        end
      end
    end
  end
  return all_true(results), why, unknown
end

local function present(v) return v ~= nil and v ~= json.null end

local function action_matches(st, action)
  local raw = st.raw
  if present(raw.Action) then
    for _, a in ipairs(list(raw.Action)) do
      if type(a) == "string" and glob_match(a, action, true) then return true end
    end
    return false
  elseif present(raw.NotAction) then
    for _, a in ipairs(list(raw.NotAction)) do
      if type(a) == "string" and glob_match(a, action, true) then return false end
    end
    return true
  end
  return false
end

-- principal_matches(st, principal_arn) -> true | false | UNKNOWN, delegated (account root: IAM policies decide too)
local function principal_matches(st, who)
  local p = st.raw.Principal
  if p == nil and st.raw.NotPrincipal == nil then return UNKNOWN end
  if st.raw.NotPrincipal ~= nil then return who and UNKNOWN or true end
  if p == "*" then return true end
  if type(p) ~= "table" then return false end
  local aws = list(p.AWS)
  if not who then
    if #aws == 0 then return false end
    for _, a in ipairs(aws) do
      if type(a) == "string" and not (a:match("^%d+$") or a:match("^arn:aws[%w-]*:iam::%d+:root$")) then return true end
    end
    return true, true -- only account principals: allowed if an IAM policy of the caller allows it too
  end
  local acct = who:match("^arn:aws[%w-]*:[is][at][ms]s?::(%d+):")
  for _, a in ipairs(aws) do
    if a == "*" then return true end
    if type(a) == "string" then
      if a == who then return true end
      local role = who:match("^arn:aws[%w-]*:iam::%d+:role/(.+)$")
      local ar = a:match("^arn:aws[%w-]*:iam::%d+:role/(.+)$")
      if role and ar and ar == role and a:match("::(%d+):") == acct then return true end
      if acct and (a == acct or a == ("arn:aws:iam::" .. acct .. ":root")) then return true, true end
    end
  end
  return false
end

-- evaluate(pol, action, ctx, opts) -> {outcome, statement, why, delegated, unknown_keys, applies = {per statement}}
-- opts.principal: the caller (the parent instance's role ARN); without it every statement's Principal is taken as
-- naming the caller.
function M.evaluate(pol, action, ctx, opts)
  opts = opts or {}
  local res = { action = action, applies = {} }
  local deny_t, deny_u, allow_t, allow_u
  local misses = {}
  for _, st in ipairs(pol.statements) do
    local a = action_matches(st, action)
    local r, why, unk, delegated = false, nil, {}, nil
    if a then
      local p
      p, delegated = principal_matches(st, opts.principal)
      if p == false then
        why = "Principal does not name the caller"
      else
        local c
        c, why, unk = M.eval_condition(st.raw.Condition, ctx)
        r = (p == UNKNOWN and c ~= false) and UNKNOWN or c
      end
    end
    res.applies[#res.applies + 1] = { statement = st, result = r, why = why, unknown_keys = unk }
    if st.effect == "Deny" then
      if r == true and not deny_t then deny_t = { st, why } end
      if r == UNKNOWN and not deny_u then deny_u = { st, unk } end
    else
      if r == true and (not allow_t or (allow_t[2] and not delegated)) then allow_t = { st, delegated } end
      if r == UNKNOWN and not allow_u then allow_u = { st, unk } end
      if a and r == false and why then misses[#misses + 1] = st.sid .. ": " .. why end
    end
  end
  if deny_t then
    res.outcome, res.statement = "denied", deny_t[1]
  elseif deny_u then
    res.outcome, res.statement = "unknown", deny_u[1]
    res.why = string.format("Deny statement %s may apply, depending on %s", deny_u[1].sid, table.concat(deny_u[2], ", "))
    res.unknown_keys = deny_u[2]
  elseif allow_t then
    res.outcome, res.statement = "allowed", allow_t[1]
    res.delegated = allow_t[2] or nil
  elseif allow_u then
    res.outcome, res.statement = "unknown", allow_u[1]
    res.why = string.format("Allow statement %s applies only if %s match", allow_u[1].sid,
      table.concat(allow_u[2], ", "))
    res.unknown_keys = allow_u[2]
  else
    res.outcome = "not_allowed"
    res.misses = misses
  end
  return res
end

-- covers(pol, action) -> true when some Allow statement's Action (or NotAction) covers action
function M.covers(pol, action)
  for _, st in ipairs(pol.statements) do
    if st.effect == "Allow" and action_matches(st, action) then return true end
  end
  return false
end

-- ---- lint ------------------------------------------------------------------------------------------------------------
local KNOWN_OPS = {}
for k in pairs(BASE) do KNOWN_OPS[#KNOWN_OPS + 1] = k end
for k in pairs(OTHER) do KNOWN_OPS[#KNOWN_OPS + 1] = k end

local function op_hint(op)
  local base = op:gsub("^For%a+Values?:", ""):gsub("IfExists$", "")
  for _, k in ipairs(KNOWN_OPS) do
    if k:lower() == base:lower() then return " (did you mean " .. op:gsub(base:gsub("%p", "%%%0"), k) .. "?)" end
  end
  for _, k in ipairs(KNOWN_OPS) do
    if k:lower():find(base:lower(), 1, true) or base:lower():find(k:lower(), 1, true) then
      return " (did you mean " .. k .. "?)"
    end
  end
  if op:lower():match("^foranyvalue") or op:lower():match("^forallvalues") then
    return " (the set prefixes are ForAnyValue: and ForAllValues:)"
  end
  return ""
end

-- is this key an attestation key, and if not, does it look like a misspelled one? -> valid, hint
local function check_key(k)
  local l = k:lower()
  if l:sub(1, #ATT) == ATT then
    local rest = l:sub(#ATT + 1)
    if rest == "imagesha384" then return true end
    local n = rest:match("^pcr(%d+)$")
    if n and tonumber(n) <= 31 and (n == "0" or not n:match("^0")) then return true end
    if rest == "" then return false, " (a bare kms:RecipientAttestation is not a key: name ImageSha384 or PCR<n>)" end
    if n then return false, " (PCR indexes are 0..31, without leading zeros)" end
    return false, " (the keys are kms:RecipientAttestation:ImageSha384 and kms:RecipientAttestation:PCR<n>)"
  end
  if l == "kms:recipientattestation" then
    return false, " (a bare kms:RecipientAttestation is not a key: name ImageSha384 or PCR<n>)"
  end
  if l:find("attest", 1, true) or l:find("imagesha", 1, true) or l:match("pcr%d+$") then
    local tail = l:match("(imagesha%d+)$") or l:match("(pcr%d+)$")
    local sug = tail and ("kms:RecipientAttestation:" .. (tail:match("^pcr") and ("PCR" .. tail:sub(4)) or "ImageSha384"))
    return false, sug and (" (did you mean " .. sug .. "?)") or " (misspelled kms:RecipientAttestation:…?)"
  end
  return true, nil, true -- not an attestation key at all
end
M.check_key = check_key

local function has_attestation_condition(st)
  for op, keys in pairs(type(st.raw.Condition) == "table" and st.raw.Condition or {}) do
    if type(keys) == "table" then
      for k in pairs(keys) do
        local valid, _, other = check_key(k)
        if valid and not other and op ~= "Null" then return true end
      end
    end
  end
  return false
end
M.has_attestation_condition = has_attestation_condition

local function actions_text(st)
  local a = present(st.raw.Action) and list(st.raw.Action) or { "NotAction " .. json.encode(st.raw.NotAction) }
  local out = {}
  for _, x in ipairs(a) do out[#out + 1] = tostring(x) end
  return table.concat(out, ", ")
end
M.actions_text = actions_text

local function principal_text(st)
  local p = st.raw.Principal
  if p == nil then return "(no Principal)" end
  if type(p) ~= "table" then return tostring(p) end
  local out = {}
  for k, v in pairs(p) do
    for _, x in ipairs(list(v)) do out[#out + 1] = k .. " " .. tostring(x) end
  end
  table.sort(out)
  return table.concat(out, ", ")
end
M.principal_text = principal_text

-- lint(pol) -> { {code, vars, statement}, … }: what is wrong in the policy text, whatever the measurements.
function M.lint(pol)
  local out = {}
  for _, st in ipairs(pol.statements) do
    local bad_key = false
    local cond = type(st.raw.Condition) == "table" and st.raw.Condition or {}
    local ops = {}
    for op in pairs(cond) do ops[#ops + 1] = op end
    table.sort(ops)
    for _, op in ipairs(ops) do
      local o = M.parse_op(op)
      if not o then
        out[#out + 1] = { code = "KMS_POLICY_UNKNOWN_OPERATOR", statement = st,
                          vars = { op = op, sid = st.sid, hint = op_hint(op) } }
      end
      local keys = {}
      for k in pairs(type(cond[op]) == "table" and cond[op] or {}) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do
        local valid, hint, other = check_key(k)
        if not valid then
          bad_key = true
          out[#out + 1] = { code = "KMS_POLICY_BAD_CONDITION_KEY", statement = st, vars = { key = k, sid = st.sid, hint = hint } }
        elseif not other and o and o.base ~= "Null" then
          for _, v in ipairs(list(cond[op][k])) do
            local s = tostring(v)
            local why
            if o.base:match("Like") then
              if not s:match("^[%x%*%?]+$") then why = "it is not hex" end
            elseif #s ~= 96 then
              why = string.format("a SHA-384 measurement has 96 hex digits, this has %d", #s)
            elseif not s:match("^%x+$") then
              why = "it is not hex"
            elseif o.base == "StringEquals" and s:match("%u") then
              why = "StringEquals is case-sensitive and the value has upper-case digits; the document's PCRs are lower-case hex (AWS's examples use StringEqualsIgnoreCase)"
            end
            if why then
              out[#out + 1] = { code = "KMS_POLICY_VALUE_FORMAT", statement = st,
                                vars = { key = k, value = s, sid = st.sid, why = why } }
            end
          end
        end
      end
    end
    if st.effect == "Allow" and not bad_key and not has_attestation_condition(st) then
      local covers = {}
      for _, a in ipairs(M.ENCLAVE_ACTIONS) do
        if action_matches(st, a) then covers[#covers + 1] = a end
      end
      if #covers > 0 then
        out[#out + 1] = { code = "KMS_POLICY_UNCONDITIONED_ALLOW", statement = st,
          vars = { sid = st.sid, actions = table.concat(covers, ", "), principal = principal_text(st) } }
      end
    end
  end
  return out
end

-- The attestation conditions of Allow statements with a positive string operator: { {sid, op, key, index, values} }
function M.expectations(pol)
  local out = {}
  for _, st in ipairs(pol.statements) do
    for op, keys in pairs(type(st.raw.Condition) == "table" and st.raw.Condition or {}) do
      local o = M.parse_op(op)
      if o and o.computed and o.base ~= "Null" and not BASE[o.base].neg and type(keys) == "table" then
        for k, v in pairs(keys) do
          local l = k:lower()
          local idx = l == ATT .. "imagesha384" and 0 or tonumber(l:match("^" .. ATT .. "pcr(%d+)$") or "")
          if idx and check_key(k) then
            out[#out + 1] = { statement = st, sid = st.sid, effect = st.effect, op = op, key = k, index = idx,
                              values = list(v), like = o.base:match("Like") ~= nil,
                              nocase = o.base:match("IgnoreCase") ~= nil }
          end
        end
      end
    end
  end
  table.sort(out, function(a, b)
    if a.statement.index ~= b.statement.index then return a.statement.index < b.statement.index end
    return a.key < b.key
  end)
  return out
end

return M
