%% The shim's link to the routing sidecar(s): the API mod_consult calls.
%%
%% One connection process per sidecar address (consult_grpc_conn), each with
%% its own registered name and ETS table. Callers read that table first
%% (status and breaker, watch list, owned shops) so that they pick a
%% connection, or fail fast (unavailable, circuit_open, no_owner), without
%% messaging any process; only a request that may go is a call.
%%
%% Several sidecars: filter/4 picks the connection: a stanza to a shop goes
%% to the sidecar that owns the shop (WatchList.owned) and is connected,
%% anything else to any connected one (consult_owners). Notifications go to
%% every connection.
-module(consult_grpc).

-export([start_link/1, filter/3, filter/4, notify/1, notify/2, watched/2, status/0, status/1,
         statuses/0, owned/1, new_counters/0, refused/0,
         unary_filter/3, connections/0, set_connections/1, shim_version/0]).

%% The name of the one connection when nobody said otherwise.
-define(DEFAULT_NAME, ?MODULE).
-define(CONNECTIONS, {?MODULE, connections}).
%% counters: the stanzas that failed here, before any connection was asked.
-define(REFUSED, {?MODULE, refused}).
-define(REFUSED_REASONS, [unavailable, circuit_open, no_owner]).
%% Sent in the Hello.
-define(SHIM_VERSION, <<"0.2.0">>).
%% How much longer than its own timeout a caller waits for the connection.
-define(CALL_MARGIN, 1000).

%% name: registered name of the process and of its ETS table (default
%% consult_grpc); list every connection's name in set_connections/1.
%% token: sent as `authorization: Bearer <token>` on every stream (empty: none).
%% keepalive_interval: ms between PINGs (infinity: none); keepalive_timeout: ms
%% to wait for the ACK. on_watch is called as M:F(Name, Agents) with the agents
%% of a watch list not yet reported on this connection; on_inject as
%% M:F(Stanzas); on_erase as M:F(Jid, Account) (consult_sidecar). tls: connect over TLS (see consult_transport:tls_config();
%% absent or false: plain h2c). backoff_min/backoff_max and max_stream_id are
%% for tests.
-spec start_link(#{host := string() | binary(), port := inet:port_number(),
                   hosts := [binary()], node := binary(), name => atom(), token => binary(),
                   tls => false | consult_transport:tls_config(),
                   breaker_threshold => pos_integer(), breaker_cooldown => non_neg_integer(),
                   keepalive_interval => pos_integer() | infinity,
                   keepalive_timeout => pos_integer(),
                   connect_timeout => timeout(), on_watch => {module(), atom()},
                   on_inject => {module(), atom()}, on_erase => {module(), atom()},
                   watch_file => file:filename(),
                   backoff_min => pos_integer(), backoff_max => pos_integer(),
                   max_stream_id => pos_integer()}) ->
          gen_server:start_ret().
start_link(Opts) ->
    gen_server:start_link({local, maps:get(name, Opts, ?DEFAULT_NAME)}, consult_grpc_conn, Opts, []).

-spec shim_version() -> binary().
shim_version() -> ?SHIM_VERSION.

%% The connections stanzas may go to, in the configured order.
-spec connections() -> [atom()].
connections() ->
    persistent_term:get(?CONNECTIONS, [?DEFAULT_NAME]).

%% [] forgets the list (back to the one default connection).
-spec set_connections([atom()]) -> ok.
set_connections([]) ->
    _ = persistent_term:erase(?CONNECTIONS),
    ok;
set_connections(Names) ->
    case connections() of
        Names -> ok;  %% no rewrite: a persistent_term update costs a global GC
        _ -> persistent_term:put(?CONNECTIONS, Names)
    end.

-spec filter(binary(), iodata(), pos_integer()) ->
          {ok, consult_pb:verdict()}
        | {error, unavailable | timeout | circuit_open | overloaded}.
filter(Host, Xml, TimeoutMs) ->
    filter(Host, any, Xml, TimeoutMs).

%% Target: the bare JID of the shop the stanza is addressed to, which only
%% the sidecar owning that shop may decide (no_owner while no connected one
%% does), or any: whichever sidecar is connected.
-spec filter(binary(), binary() | any, iodata(), pos_integer()) ->
          {ok, consult_pb:verdict()}
        | {error, unavailable | timeout | circuit_open | overloaded | no_owner | {bad_verdict, term()}}.
filter(Host, Target, Xml, TimeoutMs) when is_binary(Host), is_integer(TimeoutMs), TimeoutMs > 0 ->
    %% When the caller stops waiting, on the wall clock the sidecar shares (NTP).
    Deadline = erlang:system_time(millisecond) + TimeoutMs,
    case pick(Target) of
        {ok, Name} -> verdict(call(Name, {filter, Host, iolist_to_binary(Xml), TimeoutMs, Deadline}, TimeoutMs));
        {error, Reason} = Error -> count_refused(Reason), Error
    end.

%% The connection process hands over a verdict's bytes: decoded here, in the
%% caller, so that one process does not decode every verdict of the node.
verdict({verdict, Bin}) ->
    try {ok, consult_pb:decode_verdict(Bin)}
    catch error:{consult_pb, Why} -> {error, {bad_verdict, Why}}
    end;
verdict(Other) ->
    Other.

%% Fire and forget, to every connection; dropped while disconnected, and
%% when too many wait for the send window (counted in status()). Encoded
%% here so a malformed event fails in the caller, not in the connection.
-spec notify(consult_pb:session_event()) -> ok.
notify(Event) ->
    Msg = iolist_to_binary(consult_pb:encode_shim_message({event, Event})),
    lists:foreach(fun(Name) -> gen_server:cast(Name, {notify, Msg}) end, connections()).

%% To one connection only.
-spec notify(atom(), consult_pb:session_event()) -> ok.
notify(Name, Event) ->
    Msg = iolist_to_binary(consult_pb:encode_shim_message({event, Event})),
    gen_server:cast(Name, {notify, Msg}).

%% Whether the latest watch list of any connection (connected or not) names
%% the JID: what makes a stanza relevant.
-spec watched(shop | agent, binary()) -> boolean().
watched(Kind, BareJid) ->
    lists:any(fun(Name) -> consult_sidecar:watched(Name, Kind, BareJid) end, connections()).

%% One map for one connection (as before there were several), else one per
%% connection in the configured order.
-spec status() -> map() | [map()].
status() ->
    case connections() of
        [Name] -> status(Name);
        Names -> [status(Name) || Name <- Names]
    end.

-spec status(atom()) -> map().
status(Name) ->
    try gen_server:call(Name, status)
    catch exit:_ -> #{running => false, name => Name}
    end.

%% One map per connection in the configured order, however many there are.
-spec statuses() -> [map()].
statuses() ->
    [status(Name) || Name <- connections()].

%% The shops a connection's sidecar decides now, with their lease epochs.
-spec owned(atom()) -> [{binary(), non_neg_integer()}].
owned(Name) ->
    consult_sidecar:owned(Name).

%% Once per node, before the first stanza (mod_consult:start/2); kept across
%% restarts of the module.
-spec new_counters() -> ok.
new_counters() ->
    case persistent_term:get(?REFUSED, undefined) of
        undefined -> persistent_term:put(?REFUSED, counters:new(length(?REFUSED_REASONS), [write_concurrency]));
        _ -> ok
    end.

%% How many stanzas failed before any connection was asked, by reason: no
%% connection up, every breaker open, no connected sidecar owning the shop.
-spec refused() -> #{unavailable | circuit_open | no_owner => non_neg_integer()}.
refused() ->
    Ref = persistent_term:get(?REFUSED, undefined),
    maps:from_list([{Reason, case Ref of undefined -> 0; _ -> counters:get(Ref, I) end}
                    || {I, Reason} <- lists:enumerate(?REFUSED_REASONS)]).

%% Callers are many c2s processes: a counters array, no message.
count_refused(Reason) ->
    case persistent_term:get(?REFUSED, undefined) of
        undefined -> ok;
        Ref -> counters:add(Ref, index(Reason, ?REFUSED_REASONS, 1), 1)
    end.

index(X, [X | _], I) -> I;
index(X, [_ | T], I) -> index(X, T, I + 1).

%% A unary Filter call on its own stream of a connection (debugging).
-spec unary_filter(binary(), iodata(), pos_integer()) ->
          {ok, consult_pb:verdict()} | {error, {grpc, binary(), binary()}} | {error, term()}.
unary_filter(Host, Xml, TimeoutMs) when is_binary(Host), is_integer(TimeoutMs), TimeoutMs > 0 ->
    case pick(any) of
        {ok, Name} -> call(Name, {unary, Host, iolist_to_binary(Xml), TimeoutMs}, TimeoutMs);
        Error -> Error
    end.

%%% Picking a connection, from the tables only

pick(any) ->
    consult_owners:any_up([{Name, conn_state(Name)} || Name <- connections()]);
pick(Shop) ->
    Claims = [{Since, Name} || Name <- connections(), Since <- consult_sidecar:claim(Name, Shop)],
    case consult_owners:owner(Claims) of
        {ok, Name} ->
            case conn_state(Name) of
                open -> {error, circuit_open};
                down -> {error, no_owner};  %% went down just now
                _ -> {ok, Name}
            end;
        none ->
            %% A sidecar that connected but has not said what it owns yet (its first
            %% WatchList is on its way) may well own it: ask it; it refuses what it
            %% does not decide. Once every connected one has said, nobody owns it.
            case [Name || Name <- connections(), not consult_sidecar:told(Name),
                          lists:member(conn_state(Name), [closed, probe])] of
                [Name | _] -> {ok, Name};
                [] -> {error, no_owner}
            end
    end.

%% The row {status, Connected, consult_breaker:published()} that the
%% connection keeps up to date. closed: go; open: fail fast until the
%% cooldown is over, then one caller at a time asks the process (probe),
%% which lets exactly one probe through.
-spec conn_state(atom()) -> consult_owners:conn_state().
conn_state(Name) ->
    try ets:lookup(Name, status) of
        [{status, true, Published}] -> consult_breaker:conn_state(Published, erlang:monotonic_time(millisecond));
        _ -> down
    catch error:badarg -> down
    end.

call(Name, Request, TimeoutMs) ->
    try gen_server:call(Name, Request, TimeoutMs + ?CALL_MARGIN)
    catch
        exit:{timeout, _} -> {error, timeout};
        exit:_ -> {error, unavailable}
    end.
