-- myproxy.rules: ProxySQL-style query rules on top of on_query.
--
--   local rules = require('myproxy.rules')
--   local r = rules.new{
--     {name = 'no-drop', match = '^%s*drop%s', case_insensitive = true,
--      action = 'err', message = 'DROP is not allowed here'},
--     {name = 'reports-time-limit', match = '^%s*select%s', case_insensitive = true, accounts = {'reporting'},
--      action = 'rewrite', pattern = '^%s*', replacement = 'SET STATEMENT max_statement_time=5 FOR '},
--     {name = 'version', prefix = 'select @@version_comment', case_insensitive = true,
--      action = 'result', columns = {'@@version_comment'}, rows = {{'myproxy'}}},
--   }
--   handler.on_query = r:on_query()
--
-- Rules are tried in order. A rule matches when all of its conditions hold:
--   match             a Lua pattern the SQL must match (string.find)
--   prefix            a plain prefix the SQL must start with
--   case_insensitive  compare against the SQL in lower case (write match/prefix in lower case)
--   accounts          a list: client.account must be one of them
--   users             a list: the user the client logged in as must be one of them
-- and does its action:
--   'err'      refuse: message, optional code and sqlstate (default 1148, 42000)   -- stops
--   'ok'       answer OK: optional affected_rows, info                              -- stops
--   'result'   answer a result set: columns, rows (as client:result{})             -- stops
--   'forward'  send the SQL (as rewritten so far) to the server                     -- stops
--   'rewrite'  sql = sql:gsub(pattern, replacement [, count]) and go on with the next rule
--              (stop = true: forward the rewritten SQL at once)
--   'log'      print a line naming the rule, the account and the SQL, and go on
-- No rule that stops: the SQL (rewritten or not) goes to the server.
--
-- Each rule counts its hits in r.hits[name], and in the Prometheus metric
-- myproxy_rule_hits_total{rule="name"} when prometheus_counter exists.

local M = {}

local ACTIONS = {err = true, ok = true, result = true, forward = true, rewrite = true, log = true}
local FIELDS = {
  name = 'string', match = 'string', prefix = 'string', case_insensitive = 'boolean',
  accounts = 'table', users = 'table', action = 'string', message = 'string', code = 'number',
  sqlstate = 'string', affected_rows = 'number', info = 'string', columns = 'table', rows = 'table',
  pattern = 'string', replacement = 'string', count = 'number', stop = 'boolean',
}

local hits_metric = nil
local function hits_counter()
  if hits_metric == nil and prometheus_counter ~= nil then
    hits_metric = prometheus_counter('myproxy_rule_hits_total', 'Query rule hits (myproxy.rules), by rule', 'rule')
  end
  return hits_metric
end

local function set_of(list, what, name)
  local set = {}
  for _, v in ipairs(list) do
    if type(v) ~= 'string' then error(('rule %q: %s must be a list of strings'):format(name, what), 4) end
    set[v] = true
  end
  return set
end

local function check_rule(i, rule)
  if type(rule) ~= 'table' then error(('rule %d is not a table'):format(i), 3) end
  local name = rule.name
  if type(name) ~= 'string' or name == '' then error(('rule %d has no name'):format(i), 3) end
  for k, v in pairs(rule) do
    local want = FIELDS[k]
    if want == nil then error(('rule %q: unknown field %q'):format(name, tostring(k)), 3) end
    if type(v) ~= want then error(('rule %q: %s must be a %s'):format(name, k, want), 3) end
  end
  if not ACTIONS[rule.action] then
    error(('rule %q: action must be err, ok, result, forward, rewrite or log'):format(name), 3)
  end
  if rule.match ~= nil then
    local ok, err = pcall(string.find, '', rule.match)
    if not ok then error(('rule %q: bad pattern: %s'):format(name, err), 3) end
  end
  if rule.action == 'err' and rule.message == nil then error(('rule %q: err needs a message'):format(name), 3) end
  if rule.action == 'rewrite' and (rule.pattern == nil or rule.replacement == nil) then
    error(('rule %q: rewrite needs pattern and replacement'):format(name), 3)
  end
  if rule.action == 'result' and rule.columns == nil then error(('rule %q: result needs columns'):format(name), 3) end
  return {
    name = name, match = rule.match, prefix = rule.prefix, lower = rule.case_insensitive == true,
    accounts = rule.accounts and set_of(rule.accounts, 'accounts', name),
    users = rule.users and set_of(rule.users, 'users', name),
    action = rule.action, rule = rule,
  }
end

--- Builds a rule set from a list of rule tables (checked now: a mistake fails config.lua at startup).
function M.new(list)
  if type(list) ~= 'table' then error('rules.new() expects a list of rules', 2) end
  local set = {rules = {}, hits = {}}
  local names = {}
  for i, rule in ipairs(list) do
    local r = check_rule(i, rule)
    if names[r.name] then error(('rule name %q is used twice'):format(r.name), 2) end
    names[r.name] = true
    set.hits[r.name] = 0
    set.rules[#set.rules + 1] = r
  end
  hits_counter()
  return setmetatable(set, {__index = M})
end

local function matches(r, client, sql, lower)
  local text = r.lower and lower() or sql
  if r.prefix ~= nil and text:sub(1, #r.prefix) ~= r.prefix then return false end
  if r.match ~= nil and not text:find(r.match) then return false end
  if r.accounts ~= nil and not r.accounts[client.account or ''] then return false end
  if r.users ~= nil and not r.users[client.user or ''] then return false end
  return true
end

--- Applies the rules to one query: returns what on_query returns (nothing, or an action).
function M:apply(client, sql)
  local original = sql
  local lowered = nil
  local function lower()
    if lowered == nil then lowered = sql:lower() end
    return lowered
  end
  for _, r in ipairs(self.rules) do
    if matches(r, client, sql, lower) then
      self.hits[r.name] = self.hits[r.name] + 1
      if hits_metric ~= nil then hits_metric:inc(r.name) end
      local rule, action = r.rule, r.action
      if action == 'err' then
        return client:err(rule.message, rule.code, rule.sqlstate)
      elseif action == 'ok' then
        return client:ok{affected_rows = rule.affected_rows, info = rule.info}
      elseif action == 'result' then
        return client:result{columns = rule.columns, rows = rule.rows}
      elseif action == 'forward' then
        break
      elseif action == 'rewrite' then
        sql = sql:gsub(rule.pattern, rule.replacement, rule.count)
        lowered = nil
        if rule.stop then break end
      elseif action == 'log' then
        print(('rule %s: account=%s sql=%s'):format(r.name, tostring(client.account), sql))
      end
    end
  end
  if sql ~= original then return client:forward(sql) end
end

--- A function to use as handler.on_query.
function M:on_query()
  return function(client, sql) return self:apply(client, sql) end
end

return M
