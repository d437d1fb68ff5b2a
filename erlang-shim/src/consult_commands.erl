%% mod_consult's ejabberd commands (ejabberdctl, and mod_http_api for
%% admins): consult_status and consult_owned. mod_consult registers them when
%% its first host starts and unregisters them when its last host stops. They
%% read the connections' state (consult_grpc) and leave the text to the pure
%% consult_status.
-module(consult_commands).

-export([get_commands_spec/0, register_commands/0, unregister_commands/0, status/0, owned/0]).

-include("ejabberd_commands.hrl").

-spec get_commands_spec() -> [#ejabberd_commands{}].
get_commands_spec() ->
    [command(consult_status, status, {status, string},
             "Show mod_consult's connections to the routing sidecars",
             "One block per sidecar connection, in the order of the sidecars option: "
             "its address, the link (connected, connecting, or down with the last error "
             "and when it retries), the circuit breaker, the sidecar's id (WatchList.sidecar), "
             "how many shops it decides now, and what became of the stanzas sent its way "
             "since the connection process started (forwarded, verdicts, timed out, failed, "
             "waiting). The last lines count the stanzas that got the failure_policy "
             "before any sidecar was asked.",
             "The status, as text",
             "mod_consult on ejabberd@localhost: 1 sidecar connection\n"
             "consult_grpc (127.0.0.1:50051)\n"
             "  link:           connected\n"
             "  breaker:        closed (0 timeouts in a row)\n"
             "  sidecar id:     desk-a\n"
             "  shops owned:    2\n"
             "  stanzas:        12 forwarded, 12 verdicts, 0 timed out, 0 failed, 0 waiting now\n"
             "  notifications:  0 queued, 0 dropped\n"
             "stanzas that got the failure_policy at once, no sidecar asked\n"
             "  none connected: 0\n"
             "  breaker open:   0\n"
             "  no owner:       0\n"),
     command(consult_owned, owned, {shops, string},
             "List the shops each routing sidecar decides now",
             "For each sidecar connection, the shops its latest watch list says it owns "
             "(WatchList.owned), with the lease epoch when the sidecar's store has leases. "
             "A message to a shop goes to the sidecar that owns it; while none does, it "
             "gets the failure_policy. A connection that is down owns nothing.",
             "The shops by connection, as text",
             "consult_grpc (127.0.0.1:50051, sidecar desk-a): owns 2 shops\n"
             "  shop_2@localhost\n"
             "  shop_3@localhost\n")].

%% Both commands: admin only, no arguments, a text result, run by a
%% function of this module.
-spec command(atom(), atom(), {atom(), string}, string(), string(), string(), string()) ->
          #ejabberd_commands{}.
command(Name, Function, Result, Desc, Longdesc, ResultDesc, ResultExample) ->
    #ejabberd_commands{name = Name, tags = [consult], desc = Desc, longdesc = Longdesc,
                       policy = admin, module = ?MODULE, function = Function, args = [],
                       result = Result, result_desc = ResultDesc,
                       result_example = ResultExample}.

-spec register_commands() -> ok.
register_commands() ->
    ejabberd_commands:register_commands(mod_consult, get_commands_spec()).

%% ejabberd 23.01 deletes a command only if the record given is the stored
%% one, definer included.
-spec unregister_commands() -> ok.
unregister_commands() ->
    _ = ejabberd_commands:unregister_commands([C#ejabberd_commands{definer = mod_consult}
                                               || C <- get_commands_spec()]),
    ok.

-spec status() -> string().
status() ->
    consult_status:status_text(node(), consult_grpc:statuses(), consult_grpc:refused(),
                               consult_timing:means(consult_timing:read())).

-spec owned() -> string().
owned() ->
    consult_status:owned_text([{S, consult_grpc:owned(Name)}
                               || S = #{name := Name} <- consult_grpc:statuses()]).
