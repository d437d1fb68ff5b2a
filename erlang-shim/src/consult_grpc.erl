%% The shim's connection to the routing sidecar: a minimal h2c (HTTP/2 with
%% prior knowledge) gRPC client that keeps one long-lived bidi FilterStream
%% call open and correlates verdicts to callers by seq.
%%
%% Transport: plain TCP (h2c), or TLS with ALPN h2 when started with tls
%% (consult_transport: the sidecar's certificate is verified against a CA
%% file and a name; an optional client certificate for mutual TLS). A failed
%% handshake is a failed connect like any other.
%%
%% Failure policy: the process never crashes because of the sidecar. It starts
%% disconnected, connects from handle_info with exponential backoff, and on any
%% connection or protocol failure answers the callers waiting on that
%% connection with {error, unavailable} and reconnects. Callers check a public
%% ETS row first so they fail fast (unavailable, circuit_open) without
%% messaging the process.
%%
%% Liveness: a PING every keepalive_interval; no ACK within keepalive_timeout
%% and the connection is closed (its callers get unavailable at once) and
%% made again.
%%
%% GOAWAY from the sidecar: the connection is kept for what it still owes
%% (streams up to the GOAWAY's last-stream-id) and a new connection is made at
%% once for new requests. Requests on streams the sidecar did not take fail
%% as unavailable. The same happens, initiated by us, when stream ids run out.
%%
%% Several sidecars: one such process per sidecar address, each with its own
%% name and ETS table (status, watch list, owned shops). filter/4 picks the
%% connection: a stanza to a shop goes to the sidecar that owns the shop
%% (WatchList.owned) and is connected, anything else to any connected one
%% (consult_owners). Notifications go to every connection, and each one tells
%% its sidecar when an Erlang node comes or goes (ClusterEvent).
-module(consult_grpc).
-behaviour(gen_server).

-export([start_link/1, filter/3, filter/4, notify/1, notify/2, watched/2, status/0, status/1,
         unary_filter/3, connections/0, set_connections/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-include("logger.hrl").

%% The name of the one connection when nobody said otherwise.
-define(DEFAULT_NAME, ?MODULE).
-define(CONNECTIONS, {?MODULE, connections}).
-define(SHIM_VERSION, <<"0.2.0">>).

-define(STREAM_PATH, <<"/consult.v1.StanzaFilter/FilterStream">>).
-define(UNARY_PATH, <<"/consult.v1.StanzaFilter/Filter">>).

-define(DEFAULT_WINDOW, 65535).
-define(DEFAULT_FRAME_SIZE, 16384).
-define(DEFAULT_TABLE_SIZE, 4096).
-define(MAX_WINDOW, 16#7fffffff).
-define(MAX_STREAM_ID, 16#7fffffff).
%% Our receive windows; replenished once this much has been consumed.
-define(RECV_WINDOW, 16#1000000).
-define(WINDOW_REFILL, 16#100000).
-define(MAX_GRPC_MESSAGE, 16#4000000).
%% A header block (all its CONTINUATIONs) and the decoded list may not be
%% larger; we say so in SETTINGS_MAX_HEADER_LIST_SIZE.
-define(MAX_HEADER_BLOCK, 65536).
-define(MAX_PENDING, 10000).
%% Notifications waiting for the send window; more are dropped and counted.
-define(MAX_QUEUED_NOTIFY, 10000).
-define(CALL_MARGIN, 1000).
-define(BACKOFF_MIN, 100).
-define(BACKOFF_MAX, 5000).
%% A connection that ends after living this long starts a new backoff series.
-define(HEALTHY_AFTER, 1000).
-define(KEEPALIVE_INTERVAL, 10000).
-define(KEEPALIVE_TIMEOUT, 5000).
%% ms between two warnings about dropped notifications.
-define(DROP_LOG_EVERY, 10000).

%% gRPC status codes (grpc-status) that say the sidecar refused this shim.
-define(GRPC_PERMISSION_DENIED, <<"7">>).
-define(GRPC_UNAUTHENTICATED, <<"16">>).

-record(stream, {
    id :: pos_integer(),
    kind :: main | {unary, gen_server:from(), reference()},
    send_win :: integer(),
    %% gRPC messages waiting for send window, oldest first; notify messages
    %% are counted so that their queue can be bounded.
    out = queue:new() :: queue:queue({notify | other, binary()}),
    out_bytes = 0 :: non_neg_integer(),
    out_notifies = 0 :: non_neg_integer(),
    out_fin = false :: boolean(),  %% END_STREAM goes with the last queued byte
    in = <<>> :: binary(),         %% partial gRPC message
    in_unacked = 0 :: non_neg_integer(),
    messages = [] :: [binary()]    %% unary: response messages, newest first
}).

%% One HTTP/2 connection. There is at most one current connection (new
%% requests go there) and any number of draining ones (after a GOAWAY).
-record(conn, {
    ref :: reference(),            %% identifies the connection and its main stream
    sock :: consult_transport:socket(),
    role = current :: current | draining,
    since :: integer(),            %% monotonic ms when connected
    buf = <<>> :: binary(),
    %% A header block still waiting for CONTINUATION: {StreamId, EndStream, Fragments, Size}.
    continuation = undefined :: undefined | {pos_integer(), boolean(), [binary()], non_neg_integer()},
    hpack = consult_hpack:new() :: consult_hpack:decoder(),
    %% The peer's settings.
    max_frame = ?DEFAULT_FRAME_SIZE :: pos_integer(),
    peer_window = ?DEFAULT_WINDOW :: non_neg_integer(),
    peer_max_streams = infinity :: non_neg_integer() | infinity,
    peer_table_size = ?DEFAULT_TABLE_SIZE :: non_neg_integer(),
    send_win = ?DEFAULT_WINDOW :: integer(),    %% connection send window
    recv_win = ?RECV_WINDOW :: integer(),       %% what the peer may still send us
    unacked = 0 :: non_neg_integer(),           %% received, not yet given back
    next_stream = 1 :: pos_integer(),
    main :: pos_integer(),
    streams = #{} :: #{pos_integer() => #stream{}},
    goaway = undefined :: undefined | non_neg_integer(),  %% the peer's last-stream-id
    ping = undefined :: undefined | {binary(), reference()}  %% outstanding PING, its timer
}).

-record(st, {
    name :: atom(),                %% registered name, and the name of its ETS table
    host :: string(),
    port :: inet:port_number(),
    authority :: binary(),
    transport :: consult_transport:config(),
    scheme :: binary(),            %% :scheme, http or https
    node :: binary(),              %% for the Hello
    hosts :: [binary()],
    auth_headers :: [{binary(), binary()}],
    connect_timeout :: timeout(),
    threshold :: pos_integer(),
    cooldown :: non_neg_integer(),
    keepalive_interval :: pos_integer() | infinity,
    keepalive_timeout :: pos_integer(),
    backoff_min :: pos_integer(),
    backoff_max :: pos_integer(),
    max_stream_id :: pos_integer(),
    conn = undefined :: undefined | #conn{},
    draining = [] :: [#conn{}],
    connect_now = false :: boolean(),          %% connect as soon as the current input is handled
    reconnect_timer = undefined :: undefined | reference(),
    seq = 0 :: non_neg_integer(),
    %% Callers waiting for a verdict, and the connection their request went on.
    pending = #{} :: #{non_neg_integer() => {gen_server:from(), reference(), reference()}},
    backoff :: pos_integer(),
    attempts = 0 :: non_neg_integer(),
    failures = 0 :: non_neg_integer(),  %% consecutive timeouts
    breaker = closed :: closed | {open, integer()},
    probe = undefined :: undefined | non_neg_integer(),  %% the seq of the half-open probe
    ping_seq = 0 :: non_neg_integer(),
    notify_dropped = 0 :: non_neg_integer(),
    %% Rate limit of the drop warning: {next warning at (monotonic ms), drops not yet logged}.
    drop_log = {0, 0} :: {integer(), non_neg_integer()},
    watch_gen = 0 :: non_neg_integer(),
    %% The shops the sidecar decides now, as it said on the current connection.
    claims = #{} :: consult_owners:claims(),
    sidecar_id = <<>> :: binary(),  %% WatchList.sidecar
    %% The agents reported to on_watch since the current connection was made.
    reported = #{} :: #{binary() => true},
    on_watch = undefined :: undefined | {module(), atom()},
    on_inject = undefined :: undefined | {module(), atom()},
    watch_file = undefined :: undefined | file:filename()
}).

%%% API

%% name: registered name of the process and of its ETS table (default
%% consult_grpc); list every connection's name in set_connections/1.
%% token: sent as `authorization: Bearer <token>` on every stream (empty: none).
%% keepalive_interval: ms between PINGs (infinity: none); keepalive_timeout: ms
%% to wait for the ACK. on_watch is called as M:F(Name, Agents) with the agents
%% of a watch list not yet reported on this connection. tls: connect over TLS
%% (see consult_transport:tls_config(); absent or false: plain h2c).
%% backoff_min/backoff_max and max_stream_id are for tests.
-spec start_link(#{host := string() | binary(), port := inet:port_number(),
                   hosts := [binary()], node := binary(), name => atom(), token => binary(),
                   tls => false | consult_transport:tls_config(),
                   breaker_threshold => pos_integer(), breaker_cooldown => non_neg_integer(),
                   keepalive_interval => pos_integer() | infinity,
                   keepalive_timeout => pos_integer(),
                   connect_timeout => timeout(), on_watch => {module(), atom()},
                   on_inject => {module(), atom()}, watch_file => file:filename(),
                   backoff_min => pos_integer(), backoff_max => pos_integer(),
                   max_stream_id => pos_integer()}) ->
          gen_server:start_ret().
start_link(Opts) ->
    gen_server:start_link({local, maps:get(name, Opts, ?DEFAULT_NAME)}, ?MODULE, Opts, []).

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
        | {error, unavailable | timeout | circuit_open | overloaded | no_owner}.
filter(Host, Target, Xml, TimeoutMs) when is_binary(Host), is_integer(TimeoutMs), TimeoutMs > 0 ->
    %% When the caller stops waiting, on the wall clock the sidecar shares (NTP).
    Deadline = erlang:system_time(millisecond) + TimeoutMs,
    case pick(Target) of
        {ok, Name} -> call(Name, {filter, Host, iolist_to_binary(Xml), TimeoutMs, Deadline}, TimeoutMs);
        Error -> Error
    end.

%% Fire and forget, to every connection; dropped while disconnected, and
%% beyond ?MAX_QUEUED_NOTIFY waiting for the send window (counted in
%% status()). Encoded here so a malformed event fails in the caller, not in
%% the connection process.
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
    lists:any(fun(Name) ->
                      try ets:member(Name, {Kind, BareJid})
                      catch error:badarg -> false
                      end
              end, connections()).

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

%% A unary Filter call on its own stream of a connection (debugging).
-spec unary_filter(binary(), iodata(), pos_integer()) ->
          {ok, consult_pb:verdict()} | {error, {grpc, binary(), binary()}} | {error, term()}.
unary_filter(Host, Xml, TimeoutMs) when is_binary(Host), is_integer(TimeoutMs), TimeoutMs > 0 ->
    case pick(any) of
        {ok, Name} -> call(Name, {unary, Host, iolist_to_binary(Xml), TimeoutMs}, TimeoutMs);
        Error -> Error
    end.

%% Read by the caller from the connections' tables, without messaging them.
pick(any) ->
    consult_owners:any_up([{Name, conn_state(Name)} || Name <- connections()]);
pick(Shop) ->
    Claims = [{Since, Name} || Name <- connections(), Since <- claim_of(Name, Shop)],
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
            case [Name || Name <- connections(), not told(Name), lists:member(conn_state(Name), [closed, probe])] of
                [Name | _] -> {ok, Name};
                [] -> {error, no_owner}
            end
    end.

%% Whether this connection's sidecar has said which shops it owns since it connected.
told(Name) ->
    try ets:member(Name, told)
    catch error:badarg -> false
    end.

claim_of(Name, Shop) ->
    try ets:lookup(Name, {owned, Shop}) of
        [{_, Since}] -> [Since];
        [] -> []
    catch error:badarg -> []
    end.

%% closed: go; open: fail fast until the cooldown is over, then one caller
%% at a time asks the process (probe), which lets exactly one probe through;
%% probing: the probe is out, everyone else fails fast.
-spec conn_state(atom()) -> consult_owners:conn_state().
conn_state(Name) ->
    try ets:lookup(Name, status) of
        [{status, true, closed}] -> closed;
        [{status, true, {open, Until}}] ->
            case now_ms() >= Until of
                true -> probe;
                false -> open
            end;
        [{status, true, probing}] -> open;
        _ -> down
    catch error:badarg -> down
    end.

call(Name, Request, TimeoutMs) ->
    try gen_server:call(Name, Request, TimeoutMs + ?CALL_MARGIN)
    catch
        exit:{timeout, _} -> {error, timeout};
        exit:_ -> {error, unavailable}
    end.

%%% gen_server

init(Opts = #{host := Host, port := Port, hosts := Hosts, node := Node}) ->
    Name = maps:get(name, Opts, ?DEFAULT_NAME),
    %% Rows: {status, Connected, Breaker}, {{shop | agent, Jid}, Gen}, {{owned, Shop}, Since},
    %% {told, true} once the sidecar said what it owns since it connected.
    ets:new(Name, [named_table, public, set, {read_concurrency, true}]),
    %% {nodeup, N} / {nodedown, N} for visible nodes (ejabberdctl's are hidden).
    ok = net_kernel:monitor_nodes(true),
    WatchFile = maps:get(watch_file, Opts, undefined),
    HostStr = unicode:characters_to_list(Host),
    AuthHeaders = case iolist_to_binary(maps:get(token, Opts, <<>>)) of
                      <<>> -> [];
                      Token -> [{<<"authorization">>, <<"Bearer ", Token/binary>>}]
                  end,
    BackoffMin = maps:get(backoff_min, Opts, ?BACKOFF_MIN),
    Transport = case maps:get(tls, Opts, false) of
                    false -> tcp;
                    Tls when is_map(Tls) -> {tls, Tls}
                end,
    St = #st{name = Name,
             host = HostStr,
             port = Port,
             authority = iolist_to_binary([HostStr, $:, integer_to_list(Port)]),
             transport = Transport,
             scheme = case Transport of tcp -> <<"http">>; _ -> <<"https">> end,
             node = Node,
             hosts = Hosts,
             auth_headers = AuthHeaders,
             connect_timeout = maps:get(connect_timeout, Opts, 1000),
             threshold = maps:get(breaker_threshold, Opts, 5),
             cooldown = maps:get(breaker_cooldown, Opts, 5000),
             keepalive_interval = maps:get(keepalive_interval, Opts, ?KEEPALIVE_INTERVAL),
             keepalive_timeout = maps:get(keepalive_timeout, Opts, ?KEEPALIVE_TIMEOUT),
             backoff_min = BackoffMin,
             backoff_max = maps:get(backoff_max, Opts, ?BACKOFF_MAX),
             backoff = BackoffMin,
             max_stream_id = maps:get(max_stream_id, Opts, ?MAX_STREAM_ID),
             on_watch = maps:get(on_watch, Opts, undefined),
             on_inject = maps:get(on_inject, Opts, undefined),
             watch_file = WatchFile},
    self() ! connect,
    {ok, publish(load_watch(WatchFile, St))}.

handle_call(status, _From, St) ->
    {reply, status_map(St), St};
handle_call({filter, _, _, _, _}, _From, St = #st{conn = undefined}) ->
    {reply, {error, unavailable}, St};
handle_call({filter, _, _, _, _}, _From, St = #st{pending = P}) when map_size(P) >= ?MAX_PENDING ->
    {reply, {error, overloaded}, St};
handle_call({filter, Host, Stanza, Timeout, Deadline}, From, St) ->
    case gate(St) of
        open ->
            {reply, {error, circuit_open}, St};
        Gate ->
            #st{seq = Seq0, pending = P, conn = C} = St,
            Seq = Seq0 + 1,
            Msg = consult_pb:encode_shim_message(
                    {filter, #{seq => Seq, hook => filter_packet, host => Host, stanza => Stanza,
                               deadline_ms => Deadline}}),
            TRef = erlang:start_timer(Timeout, self(), {filter_timeout, Seq}),
            St1 = St#st{seq = Seq, pending = P#{Seq => {From, TRef, C#conn.ref}}},
            St2 = case Gate of
                      probe -> publish(St1#st{probe = Seq});
                      closed -> St1
                  end,
            {noreply, St2#st{conn = send_message(C#conn.main, Msg, other, false, C)}}
    end;
handle_call({unary, _, _, _}, _From, St = #st{conn = undefined}) ->
    {reply, {error, unavailable}, St};
handle_call({unary, _, _, _} = Req, From, St = #st{conn = C, max_stream_id = MaxId})
  when C#conn.next_stream > MaxId ->
    %% Stream ids are used up: a new connection, this one drains.
    ?INFO_MSG("consult_grpc: stream ids used up on the connection to ~ts, opening a new one", [St#st.authority]),
    St1 = connect_now(maybe_drained(retire(C, no_error, St))),
    case St1#st.conn of
        #conn{next_stream = N} when N =< MaxId -> handle_call(Req, From, St1);
        _ -> {reply, {error, unavailable}, St1}
    end;
handle_call({unary, _, _, _}, _From, St = #st{conn = #conn{streams = Streams, peer_max_streams = Max}})
  when Max =/= infinity, map_size(Streams) >= Max ->
    %% SETTINGS_MAX_CONCURRENT_STREAMS: the sidecar would refuse the stream.
    {reply, {error, too_many_streams}, St};
handle_call({unary, Host, Stanza, Timeout}, From, St = #st{conn = C}) ->
    Msg = consult_pb:encode_filter_request(
            #{seq => 0, hook => filter_packet, host => Host, stanza => Stanza}),
    TRef = erlang:start_timer(Timeout, self(), {unary_timeout, C#conn.ref, C#conn.next_stream}),
    GrpcTimeout = {<<"grpc-timeout">>, iolist_to_binary([integer_to_list(Timeout), $m])},
    {Id, C1} = open_stream(?UNARY_PATH, [GrpcTimeout], {unary, From, TRef}, C, St),
    {noreply, St#st{conn = send_message(Id, Msg, other, true, C1)}}.

handle_cast({notify, Msg}, St = #st{conn = C = #conn{main = Main, streams = Streams}}) ->
    case Streams of
        #{Main := #stream{out_notifies = N}} when N >= ?MAX_QUEUED_NOTIFY ->
            {noreply, notify_dropped(St)};
        #{Main := _} ->
            {noreply, St#st{conn = send_message(Main, Msg, notify, false, C)}};
        _ ->
            {noreply, St}
    end;
handle_cast({notify, _}, St) ->
    {noreply, St};
%% From run_on_inject, once the stanzas are routed. An ack for an earlier main
%% stream is dropped: the sidecar sends that Inject again on the new stream.
handle_cast({inject_ack, Ref, Id}, St = #st{conn = C = #conn{ref = Ref}}) ->
    Msg = consult_pb:encode_shim_message({inject_ack, #{id => Id}}),
    {noreply, St#st{conn = send_message(C#conn.main, Msg, other, false, C)}};
handle_cast({inject_ack, _Ref, _Id}, St) ->
    {noreply, St}.

handle_info(connect, St = #st{conn = undefined}) ->
    {noreply, connect(St#st{reconnect_timer = undefined})};
handle_info({send_failed, Sock, Reason}, St) ->
    {noreply, sock_down(Sock, {send_failed, Reason}, St)};
handle_info({timeout, TRef, {filter_timeout, Seq}}, St = #st{pending = P}) ->
    case maps:take(Seq, P) of
        {{From, TRef, _ConnRef}, P1} ->
            gen_server:reply(From, {error, timeout}),
            {noreply, maybe_drained(breaker_failure(Seq, St#st{pending = P1}))};
        _ ->
            {noreply, St}
    end;
handle_info({timeout, TRef, {unary_timeout, Ref, Id}}, St) ->
    case find_conn(Ref, St) of
        #conn{streams = #{Id := #stream{kind = {unary, From, TRef}}} = Streams} = C ->
            gen_server:reply(From, {error, timeout}),
            send(consult_h2:rst_stream(Id, cancel), C),
            {noreply, maybe_drained(put_conn(C#conn{streams = maps:remove(Id, Streams)}, St))};
        _ ->
            {noreply, St}
    end;
handle_info({keepalive, Ref}, St = #st{conn = C = #conn{ref = Ref, ping = undefined}}) ->
    N = St#st.ping_seq + 1,
    Opaque = <<N:64>>,
    send(consult_h2:ping(Opaque), C),
    TRef = erlang:start_timer(St#st.keepalive_timeout, self(), {ping_timeout, Ref}),
    schedule_keepalive(Ref, St),
    {noreply, St#st{ping_seq = N, conn = C#conn{ping = {Opaque, TRef}}}};
handle_info({keepalive, Ref}, St = #st{conn = #conn{ref = Ref}}) ->
    %% The previous PING is still out; its timer decides.
    schedule_keepalive(Ref, St),
    {noreply, St};
handle_info({timeout, TRef, {ping_timeout, Ref}}, St = #st{conn = C = #conn{ref = Ref, ping = {_, TRef}}}) ->
    {noreply, conn_down(C, keepalive_timeout, St)};
handle_info({nodeup, Node}, St) ->
    {noreply, cluster_event(Node, true, St)};
handle_info({nodedown, Node}, St) ->
    {noreply, cluster_event(Node, false, St)};
handle_info(Info, St) ->
    %% Socket messages of either transport; those of an earlier socket, and
    %% already-handled timers, find nothing to do.
    case consult_transport:message(Info) of
        {data, Sock, Data} -> {noreply, input(Sock, Data, St)};
        {closed, Sock} -> {noreply, sock_down(Sock, closed, St)};
        {error, Sock, Reason} -> {noreply, sock_down(Sock, Reason, St)};
        other -> {noreply, St}
    end.

terminate(_Reason, St) ->
    %% Tell the sidecar we are going (no streams of its to accept: last id 0).
    [begin send(consult_h2:goaway(0, no_error, <<>>), C), consult_transport:close(C#conn.sock) end
     || C <- all_conns(St)],
    ok.

%%% Connection lifecycle

connect(St = #st{host = Host, port = Port, attempts = Attempts, transport = Transport}) ->
    cancel_reconnect(St),
    case consult_transport:connect(Host, Port, Transport, St#st.connect_timeout) of
        {ok, Sock} ->
            ?INFO_MSG("consult_grpc: connected to sidecar ~s:~b~s", [Host, Port, consult_transport:describe(Transport)]),
            Ref = make_ref(),
            C0 = #conn{ref = Ref, sock = Sock, since = now_ms(), main = 1},
            send([consult_h2:preface(),
                  consult_h2:settings([{enable_push, 0}, {initial_window_size, ?RECV_WINDOW},
                                       {max_header_list_size, ?MAX_HEADER_BLOCK}]),
                  consult_h2:window_update(0, ?RECV_WINDOW - ?DEFAULT_WINDOW)], C0),
            {Main, C1} = open_stream(?STREAM_PATH, [], main, C0, St),
            C2 = send_message(Main, hello(St), other, false, C1#conn{main = Main}),
            consult_transport:activate(Sock),
            schedule_keepalive(Ref, St),
            publish(St#st{conn = C2, attempts = 0, connect_now = false,
                          reconnect_timer = undefined, reported = #{}});
        {error, Reason} ->
            %% Only the first failure of a series is worth a log line.
            Attempts =:= 0 andalso
                ?WARNING_MSG("consult_grpc: sidecar ~s:~b unavailable~s (~p)~ts, retrying",
                             [Host, Port, consult_transport:describe(Transport), Reason,
                              connect_hint(Reason)]),
            schedule_reconnect(St#st{connect_now = false})
    end.

%% What to look at when the TLS handshake fails.
connect_hint({tls_alert, {_, Text}}) ->
    case string:find(Text, "hostname_check_failed") of
        nomatch -> "; check sidecar_cafile (the CA that signed the sidecar's certificate) and "
                   "the sidecar's grpc.tls";
        _ -> "; the sidecar's certificate does not name this host: check its subjectAltName "
             "or sidecar_tls_server_name"
    end;
connect_hint({tls_error, {tls_alert, {certificate_required, _}}}) ->
    "; the sidecar requires a client certificate (its grpc.tls.clientCa): set sidecar_certfile "
    "and sidecar_keyfile";
connect_hint({tls_error, {tls_alert, _}}) ->
    "; the sidecar ended the TLS session: if it requires a client certificate, sidecar_certfile "
    "must hold one its grpc.tls.clientCa signed";
connect_hint({options, _}) ->
    "; check sidecar_cafile, sidecar_certfile and sidecar_keyfile";
connect_hint({alpn, {error, closed}}) ->
    %% TLS 1.3: a sidecar that wants a client certificate may close right after the handshake.
    "; the sidecar closed the TLS session at once: if it requires a client certificate, "
    "sidecar_certfile must hold one its grpc.tls.clientCa signed";
connect_hint({alpn, _}) ->
    "; the sidecar did not choose HTTP/2 (ALPN h2): is it a gRPC server with TLS?";
connect_hint(_) ->
    "".

%% The cluster as this node sees it now, itself first; changes come as
%% ClusterEvents while the stream lasts.
hello(#st{node = Node, hosts = Hosts}) ->
    consult_pb:encode_shim_message(
      {hello, #{node => Node, hosts => Hosts, shim_version => ?SHIM_VERSION,
                cluster_nodes => [Node | [atom_to_binary(N, utf8) || N <- nodes()]]}}).

%% A node that left takes its users' presence with it: the sidecar must know
%% at once. Not queued while disconnected (the next Hello has the members).
cluster_event(Node, Up, St = #st{conn = C = #conn{main = Main}}) ->
    Msg = consult_pb:encode_shim_message({cluster, #{node => atom_to_binary(Node, utf8), up => Up}}),
    St#st{conn = send_message(Main, Msg, other, false, C)};
cluster_event(_Node, _Up, St) ->
    St.

%% After a GOAWAY (or when stream ids run out) the connection is connected
%% again at once, not after a backoff.
connect_now(St = #st{conn = undefined, connect_now = true}) -> connect(St);
connect_now(St) -> St.

schedule_reconnect(St = #st{backoff = Backoff, attempts = Attempts}) ->
    cancel_reconnect(St),
    TRef = erlang:send_after(Backoff, self(), connect),
    publish(St#st{backoff = min(Backoff * 2, St#st.backoff_max), attempts = Attempts + 1,
                  reconnect_timer = TRef}).

cancel_reconnect(#st{reconnect_timer = undefined}) -> ok;
cancel_reconnect(#st{reconnect_timer = TRef}) -> erlang:cancel_timer(TRef), ok.

schedule_keepalive(_Ref, #st{keepalive_interval = infinity}) -> ok;
schedule_keepalive(Ref, #st{keepalive_interval = Ms}) ->
    erlang:send_after(Ms, self(), {keepalive, Ref}),
    ok.

%% Stops using the current connection for new requests: it drains what it
%% owes. Code is what our GOAWAY says (no_error: we just want a new one).
retire(C = #conn{}, Code, St) ->
    send(consult_h2:goaway(0, Code, <<>>), C),
    cancel_ping(C),
    St#st{conn = undefined, draining = [C#conn{role = draining, ping = undefined} | St#st.draining],
          connect_now = true}.

%% A connection ends: everyone still waiting on it gets unavailable. The
%% current one is made again after a backoff; a draining one just goes.
conn_down(C = #conn{ref = Ref, sock = Sock, role = Role}, Reason, St0) ->
    consult_transport:close(Sock),
    cancel_ping(C),
    St = remove_conn(Ref, St0),
    {Failed, Pending} = maps:fold(
                          fun(Seq, {From, TRef, R}, {F, P}) when R =:= Ref ->
                                  erlang:cancel_timer(TRef),
                                  gen_server:reply(From, {error, unavailable}),
                                  {[Seq | F], P};
                             (_, _, Acc) ->
                                  Acc
                          end, {[], St#st.pending}, St#st.pending),
    Pending1 = maps:without(Failed, Pending),
    Unary = [{From, TRef} || #stream{kind = {unary, From, TRef}} <- maps:values(C#conn.streams)],
    [begin erlang:cancel_timer(TRef), gen_server:reply(From, {error, unavailable}) end
     || {From, TRef} <- Unary],
    Lost = length(Failed) + length(Unary),
    Probe = case lists:member(St#st.probe, Failed) of
                true -> undefined;
                false -> St#st.probe
            end,
    St1 = St#st{pending = Pending1, probe = Probe},
    case Role of
        draining ->
            Lost > 0 andalso
                ?WARNING_MSG("consult_grpc: the connection to ~ts that was going away ended (~p); "
                             "~b requests on it failed", [St#st.authority, Reason, Lost]),
            publish(St1);
        current ->
            log_down(Reason, Lost, St1),
            Lived = now_ms() - C#conn.since,
            St2 = case refused(Reason) =:= false andalso Lived >= ?HEALTHY_AFTER of
                      true -> St1#st{backoff = St1#st.backoff_min};  %% a new series
                      false -> St1  %% refused, or failed at once: keep backing off
                  end,
            schedule_reconnect(St2)
    end.

log_down(Reason, Lost, #st{host = Host, port = Port, backoff = Backoff}) ->
    LostText = case Lost of
                   0 -> "";
                   _ -> io_lib:format("; ~b requests on it failed", [Lost])
               end,
    case refused(Reason) of
        {Code, Message} ->
            %% Once per connection attempt, each after the usual backoff.
            ?WARNING_MSG("consult_grpc: the sidecar at ~s:~b refused this shim (grpc-status ~s~ts: ~ts): "
                         "check sidecar_token here and grpc.shims (node ~ts, same token) in the sidecar's "
                         "config; retrying in ~b ms",
                         [Host, Port, Code, grpc_status_name(Code), Message, node(), Backoff]);
        false ->
            ?WARNING_MSG("consult_grpc: connection to sidecar ~s:~b lost (~p)~ts~ts, reconnecting",
                         [Host, Port, Reason, LostText, connect_hint(Reason)])
    end.

refused({main_stream_ended, _, {Code, Message}})
  when Code =:= ?GRPC_UNAUTHENTICATED; Code =:= ?GRPC_PERMISSION_DENIED ->
    {Code, Message};
refused(_) ->
    false.

grpc_status_name(?GRPC_UNAUTHENTICATED) -> " UNAUTHENTICATED";
grpc_status_name(?GRPC_PERMISSION_DENIED) -> " PERMISSION_DENIED";
grpc_status_name(_) -> "".

%% A draining connection that owes nothing more is closed.
maybe_drained(St = #st{draining = []}) ->
    St;
maybe_drained(St = #st{draining = Draining, pending = P}) ->
    Owing = maps:fold(fun(_, {_, _, Ref}, Acc) -> Acc#{Ref => true} end, #{}, P),
    Done = [C || C = #conn{ref = Ref, streams = Streams} <- Draining,
                 not maps:is_key(Ref, Owing),
                 not lists:any(fun(#stream{kind = K}) -> K =/= main end, maps:values(Streams))],
    lists:foreach(fun(C) ->
                          ?INFO_MSG("consult_grpc: the old connection to ~ts answered everything "
                                    "it owed; closed", [St#st.authority]),
                          send(consult_h2:goaway(0, no_error, <<>>), C),
                          consult_transport:close(C#conn.sock)
                  end, Done),
    publish(St#st{draining = Draining -- Done}).

cancel_ping(#conn{ping = {_, TRef}}) -> erlang:cancel_timer(TRef), ok;
cancel_ping(_) -> ok.

%%% Connections by socket and by ref

all_conns(#st{conn = undefined, draining = D}) -> D;
all_conns(#st{conn = C, draining = D}) -> [C | D].

find_conn(Ref, St) ->
    case [C || C = #conn{ref = R} <- all_conns(St), R =:= Ref] of
        [C] -> C;
        [] -> undefined
    end.

find_sock(Sock, St) ->
    case [C || C = #conn{sock = S} <- all_conns(St), S =:= Sock] of
        [C] -> C;
        [] -> undefined
    end.

%% Puts a connection back where its role says: current, or among the draining.
put_conn(C = #conn{ref = Ref, role = current}, St) ->
    St#st{conn = C, draining = [D || D = #conn{ref = R} <- St#st.draining, R =/= Ref]};
put_conn(C = #conn{ref = Ref, role = draining}, St) ->
    Conn = case St#st.conn of
               #conn{ref = Ref} -> undefined;
               Other -> Other
           end,
    St#st{conn = Conn, draining = [C | [D || D = #conn{ref = R} <- St#st.draining, R =/= Ref]]}.

remove_conn(Ref, St) ->
    Conn = case St#st.conn of
               #conn{ref = Ref} -> undefined;
               Other -> Other
           end,
    St#st{conn = Conn, draining = [D || D = #conn{ref = R} <- St#st.draining, R =/= Ref]}.

sock_down(Sock, Reason, St) ->
    case find_sock(Sock, St) of
        undefined -> St;
        C -> maybe_drained(conn_down(C, Reason, St))
    end.

%%% Input

%% Frames are handled one by one; each sees the state the previous ones left.
%% A protocol error ends the connection (after a GOAWAY with its code), and
%% so does any bug triggered by network input, instead of a crash.
input(Sock, Data, St) ->
    case find_sock(Sock, St) of
        undefined ->
            St;
        C = #conn{buf = Buf} ->
            St1 = case frames(C#conn{buf = <<Buf/binary, Data/binary>>}, St) of
                      {ok, C1, S1} ->
                          consult_transport:activate(Sock),
                          put_conn(C1, S1);
                      {down, Reason, C1, S1} ->
                          conn_down(C1, Reason, S1);
                      {error, Code, Reason, C1, S1} ->
                          send(consult_h2:goaway(0, Code, <<>>), C1),
                          conn_down(C1, {protocol_error, Code, Reason}, S1)
                  end,
            connect_now(maybe_drained(St1))
    end.

frames(C, St) ->
    case consult_h2:parse(C#conn.buf, ?DEFAULT_FRAME_SIZE) of
        more ->
            {ok, C, St};
        {error, {connection_error, Code, Reason}} ->
            {error, Code, Reason, C, St};
        {ok, Frame, Rest} ->
            try frame(Frame, C#conn{buf = Rest}, St) of
                {ok, C1, St1} -> frames(C1, St1);
                Stop -> Stop
            catch
                throw:{h2, Code, Reason} ->
                    {error, Code, Reason, C, St};
                Class:Reason:Stack ->
                    ?WARNING_MSG("consult_grpc: error on sidecar input: ~p:~p ~p",
                                 [Class, Reason, Stack]),
                    {error, internal_error, {internal, Reason}, C, St}
            end
    end.

h2_error(Code, Reason) -> throw({h2, Code, Reason}).

%% A header block is in progress: only its CONTINUATION may come (6.10).
frame({continuation, Id, EndHeaders, Fragment}, C = #conn{continuation = {Id, ES, Acc, Size}}, St) ->
    Size1 = Size + byte_size(Fragment),
    Size1 =< ?MAX_HEADER_BLOCK orelse h2_error(enhance_your_calm, {header_block_too_large, Size1}),
    case EndHeaders of
        false ->
            {ok, C#conn{continuation = {Id, ES, [Fragment | Acc], Size1}}, St};
        true ->
            Block = iolist_to_binary(lists:reverse(Acc, [Fragment])),
            header_block(Id, ES, Block, C#conn{continuation = undefined}, St)
    end;
frame(_Frame, #conn{continuation = {_, _, _, _}}, _St) ->
    h2_error(protocol_error, expected_continuation);
frame({continuation, _, _, _}, _C, _St) ->
    h2_error(protocol_error, unexpected_continuation);
frame({data, Id, EndStream, Data, FlowLen}, C, St) ->
    C1 = consumed(FlowLen, C),
    case C1#conn.streams of
        #{Id := S = #stream{in = In, in_unacked = Unacked}} ->
            S1 = refill_stream(S#stream{in = <<In/binary, Data/binary>>,
                                        in_unacked = Unacked + FlowLen}, C1),
            {Msgs, Rest} = grpc_messages(S1#stream.in, []),
            stream_data(S1#stream{in = Rest}, Msgs, EndStream, C1, St);
        _ ->
            {ok, C1, St}  %% a stream we already gave up on
    end;
frame({headers, Id, EndStream, false, Fragment}, C, St) ->
    byte_size(Fragment) =< ?MAX_HEADER_BLOCK
        orelse h2_error(enhance_your_calm, {header_block_too_large, byte_size(Fragment)}),
    {ok, C#conn{continuation = {Id, EndStream, [Fragment], byte_size(Fragment)}}, St};
frame({headers, Id, EndStream, true, Block}, C, St) ->
    header_block(Id, EndStream, Block, C, St);
frame({rst_stream, Id, Code}, C = #conn{streams = Streams}, St) ->
    case Streams of
        #{Id := #stream{kind = main}} ->
            {down, {rst_stream, Code}, C, St};
        #{Id := #stream{kind = {unary, From, TRef}}} ->
            erlang:cancel_timer(TRef),
            gen_server:reply(From, {error, {rst_stream, Code}}),
            {ok, C#conn{streams = maps:remove(Id, Streams)}, St};
        _ ->
            {ok, C, St}
    end;
frame({settings, Settings}, C, St) ->
    C1 = lists:foldl(fun apply_setting/2, C, Settings),
    send(consult_h2:settings_ack(), C1),
    {ok, flush(C1), St};
frame({ping, Opaque}, C, St) ->
    send(consult_h2:ping_ack(Opaque), C),
    {ok, C, St};
frame({ping_ack, Opaque}, C = #conn{ping = {Opaque, TRef}}, St) ->
    erlang:cancel_timer(TRef),
    {ok, C#conn{ping = undefined}, St};
frame({goaway, LastId, Code, Debug}, C, St) ->
    goaway(LastId, Code, Debug, C, St);
frame({window_update, 0, Inc}, C = #conn{send_win = W}, St) ->
    W + Inc =< ?MAX_WINDOW orelse h2_error(flow_control_error, {window_overflow, 0, W + Inc}),
    {ok, flush(C#conn{send_win = W + Inc}), St};
frame({window_update, Id, Inc}, C = #conn{streams = Streams}, St) ->
    case Streams of
        #{Id := S = #stream{send_win = W}} when W + Inc =< ?MAX_WINDOW ->
            {ok, flush_stream(S#stream{send_win = W + Inc}, C), St};
        #{Id := _} ->
            stream_error(Id, flow_control_error, {window_overflow, Id}, C, St);
        _ ->
            {ok, C, St}
    end;
frame({stream_error, Id, Code, Reason}, C, St) ->
    stream_error(Id, Code, Reason, C, St);
frame(_Other, C, St) ->
    %% PRIORITY, SETTINGS acks, a PING ACK we no longer wait for, unknown types.
    {ok, C, St}.

%% A stream error ends that stream (RST_STREAM). Without its main stream the
%% connection is no use to us.
stream_error(Id, Code, Reason, C = #conn{streams = Streams}, St) ->
    send(consult_h2:rst_stream(Id, Code), C),
    case Streams of
        #{Id := #stream{kind = main}} ->
            {down, {stream_error, Code, Reason}, C, St};
        #{Id := #stream{kind = {unary, From, TRef}}} ->
            erlang:cancel_timer(TRef),
            gen_server:reply(From, {error, {stream_error, Code}}),
            {ok, C#conn{streams = maps:remove(Id, Streams)}, St};
        _ ->
            {ok, C, St}
    end.

%% The sidecar goes away. What it took (ids up to LastId) it still answers;
%% what it did not take fails now. New requests go to a new connection.
goaway(LastId, Code, Debug, C = #conn{streams = Streams, main = Main}, St) ->
    Refused = [S || S = #stream{id = Id, kind = {unary, _, _}} <- maps:values(Streams), Id > LastId],
    [begin erlang:cancel_timer(TRef), gen_server:reply(From, {error, unavailable}) end
     || #stream{kind = {unary, From, TRef}} <- Refused],
    C1 = C#conn{goaway = LastId,
                streams = maps:without([Id || #stream{id = Id} <- Refused], Streams)},
    Log = case Code of
              no_error -> info;
              _ -> warning
          end,
    case Main > LastId of
        true ->
            {down, {goaway, Code, Debug}, C1, St};
        false when C1#conn.role =:= current ->
            logger:log(Log, "consult_grpc: the sidecar at ~ts is going away (GOAWAY ~p~ts); what it owes "
                            "comes on this connection, new requests go to a new one",
                       [St#st.authority, Code, debug_text(Debug)]),
            cancel_ping(C1),
            {ok, C1#conn{role = draining, ping = undefined}, St#st{connect_now = true}};
        false ->
            {ok, C1, St}
    end.

debug_text(<<>>) -> "";
debug_text(Debug) -> io_lib:format(", ~p", [Debug]).

apply_setting({initial_window_size, Size}, C = #conn{peer_window = Old, streams = Streams}) ->
    %% A new INITIAL_WINDOW_SIZE shifts every open stream's window (6.9.2).
    Delta = Size - Old,
    Streams1 = maps:map(
                 fun(Id, S = #stream{send_win = W}) ->
                         W + Delta =< ?MAX_WINDOW
                             orelse h2_error(flow_control_error, {window_overflow, Id, W + Delta}),
                         S#stream{send_win = W + Delta}
                 end, Streams),
    C#conn{peer_window = Size, streams = Streams1};
apply_setting({max_frame_size, Size}, C) ->
    C#conn{max_frame = Size};
apply_setting({max_concurrent_streams, N}, C) ->
    C#conn{peer_max_streams = N};
apply_setting({header_table_size, N}, C) ->
    %% How much of its decoder's table our encoder may use: ours uses none.
    C#conn{peer_table_size = N};
apply_setting(_, C) ->
    C.

%% Gives connection-level receive window back in large steps. A peer that
%% sends beyond the window we gave breaks flow control (6.9.1).
consumed(N, #conn{recv_win = W}) when N > W ->
    h2_error(flow_control_error, {receive_window_exceeded, N, W});
consumed(N, C = #conn{unacked = U, recv_win = W}) when U + N >= ?WINDOW_REFILL ->
    send(consult_h2:window_update(0, U + N), C),
    C#conn{unacked = 0, recv_win = W - N + U + N};
consumed(N, C = #conn{unacked = U, recv_win = W}) ->
    C#conn{unacked = U + N, recv_win = W - N}.

refill_stream(S = #stream{id = Id, in_unacked = U}, C) when U >= ?WINDOW_REFILL ->
    send(consult_h2:window_update(Id, U), C),
    S#stream{in_unacked = 0};
refill_stream(S, _C) ->
    S.

grpc_messages(<<0, Len:32, Msg:Len/binary, Rest/binary>>, Acc) ->
    grpc_messages(Rest, [Msg | Acc]);
grpc_messages(<<Compressed, _/binary>>, _Acc) when Compressed =/= 0 ->
    h2_error(internal_error, compressed_message);  %% we never offer grpc-accept-encoding
grpc_messages(<<_, Len:32, _/binary>>, _Acc) when Len > ?MAX_GRPC_MESSAGE ->
    h2_error(internal_error, {message_too_large, Len});
grpc_messages(Rest, Acc) ->
    {lists:reverse(Acc), Rest}.

stream_data(S = #stream{kind = main}, Msgs, EndStream, C, St) ->
    C1 = store_stream(S, C),
    St1 = lists:foldl(fun(M, Acc) -> sidecar_message(M, C1, Acc) end, St, Msgs),
    case EndStream of
        true -> {down, main_stream_ended, C1, St1};
        false -> {ok, C1, St1}
    end;
stream_data(S = #stream{kind = {unary, _, _}, messages = Old}, Msgs, EndStream, C, St) ->
    S1 = S#stream{messages = lists:reverse(Msgs, Old)},
    case EndStream of
        true -> {ok, unary_done(S1, [], C), St};  %% ended without trailers
        false -> {ok, store_stream(S1, C), St}
    end.

header_block(Id, EndStream, Block, C, St) ->
    %% Decoded even when unwanted: the HPACK table must stay in sync.
    case consult_hpack:decode(Block, C#conn.hpack, ?MAX_HEADER_BLOCK) of
        {ok, Headers, Hpack} ->
            headers(Id, EndStream, Headers, C#conn{hpack = Hpack}, St);
        {error, header_list_too_large} ->
            h2_error(enhance_your_calm, header_list_too_large);
        {error, Reason} ->
            h2_error(compression_error, {hpack, Reason})
    end.

headers(Id, EndStream, Headers, C, St) ->
    Status = proplists:get_value(<<":status">>, Headers, <<"200">>),
    case C#conn.streams of
        #{Id := #stream{kind = main}} when Status =/= <<"200">>; EndStream ->
            %% Trailers (or trailers-only) end our long-lived call.
            {down, {main_stream_ended, Status, grpc_status(Headers)}, C, St};
        #{Id := S = #stream{kind = {unary, _, _}}} when Status =/= <<"200">>; EndStream ->
            {ok, unary_done(S, Headers, C), St};
        _ ->
            {ok, C, St}
    end.

unary_done(#stream{id = Id, kind = {unary, From, TRef}, messages = Msgs}, Trailers, C) ->
    erlang:cancel_timer(TRef),
    Reply = case {grpc_status(Trailers), Msgs} of
                {{<<"0">>, _}, [Msg]} ->
                    try {ok, consult_pb:decode_verdict(Msg)}
                    catch error:{consult_pb, Why} -> {error, {bad_response, Why}}
                    end;
                {{<<"0">>, _}, _} -> {error, {bad_response, length(Msgs)}};
                {{Code, Message}, _} -> {error, {grpc, Code, Message}}
            end,
    gen_server:reply(From, Reply),
    C#conn{streams = maps:remove(Id, C#conn.streams)}.

grpc_status(Headers) ->
    Code = proplists:get_value(<<"grpc-status">>, Headers, <<"unknown">>),
    {Code, percent_decode(proplists:get_value(<<"grpc-message">>, Headers, <<>>))}.

%% grpc-message is percent-encoded UTF-8.
percent_decode(<<$%, H, L, Rest/binary>>) ->
    case catch binary_to_integer(<<H, L>>, 16) of
        Byte when is_integer(Byte) -> <<Byte, (percent_decode(Rest))/binary>>;
        _ -> <<$%, (percent_decode(<<H, L, Rest/binary>>))/binary>>
    end;
percent_decode(<<C, Rest/binary>>) ->
    <<C, (percent_decode(Rest))/binary>>;
percent_decode(<<>>) ->
    <<>>.

%%% Messages from the sidecar

sidecar_message(Msg, #conn{ref = ConnRef, role = Role}, St = #st{pending = P}) ->
    case consult_pb:decode_sidecar_message(Msg) of
        {verdict, V = #{seq := Seq}} ->
            case maps:take(Seq, P) of
                {{From, TRef, _}, P1} ->
                    erlang:cancel_timer(TRef),
                    gen_server:reply(From, {ok, V}),
                    breaker_success(St#st{pending = P1});
                error ->
                    St  %% late: the caller already got {error, timeout}
            end;
        {watch, W} ->
            St1 = store_watch(W, St),
            save_watch(W, St1),
            case Role of
                current -> report_agents(W, own(W, St1));
                draining -> St1  %% a sidecar going away decides nothing more
            end;
        {inject, #{stanzas := Stanzas, id := Id}} ->
            run_on_inject(Stanzas, Id, ConnRef, St),
            St;
        {unknown, _} ->
            St
    end.

%% The owner learns which JIDs matter only now (e.g. to report the agents'
%% current sessions after a reconnect): it gets the agents this connection
%% has not reported yet, and runs apart so it cannot block us.
report_agents(#{agents := Agents}, St = #st{reported = Reported}) ->
    run_on_watch([A || A <- Agents, not maps:is_key(A, Reported)], St),
    St#st{reported = maps:from_list([{A, true} || A <- Agents])}.

run_on_watch([], _St) -> ok;
run_on_watch(_New, #st{on_watch = undefined}) -> ok;
run_on_watch(New, #st{name = Name, on_watch = {M, F}}) -> _ = spawn(M, F, [Name, New]), ok.

%% The shops this sidecar decides now replace those it decided: a shop it
%% stops listing goes to whoever lists it (or nobody) from the next stanza.
own(#{owned := Owned, sidecar := Id}, St = #st{name = Tab, claims = Claims}) ->
    {Claims1, Added, Removed} = consult_owners:claim(Claims, Owned, erlang:unique_integer([monotonic])),
    ets:insert(Tab, [{{owned, Shop}, Since} || {Shop, Since} <- Added] ++ [{told, true}]),
    lists:foreach(fun(Shop) -> ets:delete(Tab, {owned, Shop}) end, Removed),
    case {Added, Removed} of
        {[], []} -> ok;
        _ -> ?INFO_MSG("consult_grpc: sidecar ~ts~ts decides ~b shops now (+~b~ts, -~b~ts)",
                       [St#st.authority, id_text(Id), map_size(Claims1), length(Added),
                        some([S || {S, _} <- Added]), length(Removed), some(Removed)])
    end,
    St#st{claims = Claims1, sidecar_id = Id}.

%% A connection that is not up decides nothing: its sidecar may have lost
%% its shops to another while we could not hear it.
disown(St = #st{claims = Claims}) when map_size(Claims) =:= 0 ->
    St;
disown(St = #st{name = Tab, claims = Claims}) ->
    ets:match_delete(Tab, {{owned, '_'}, '_'}),
    ?INFO_MSG("consult_grpc: sidecar ~ts~ts disconnected, its ~b shops have no owner here until "
              "a sidecar claims them", [St#st.authority, id_text(St#st.sidecar_id), map_size(Claims)]),
    St#st{claims = #{}}.

id_text(<<>>) -> "";
id_text(Id) -> [" (", Id, ")"].

%% A few names for a log line.
some([]) -> "";
some(Shops) when length(Shops) =< 5 -> [": ", lists:join(", ", Shops)];
some(Shops) -> [": ", lists:join(", ", lists:sublist(Shops, 5)), ", ..."].

%% The callback routes the stanzas apart too; only when it returns is the
%% Inject acknowledged (id 0: no ack wanted). A crash sends no ack, so the
%% sidecar sends the stanzas again. With no callback nothing was routed: no ack.
run_on_inject(_Stanzas, _Id, _Ref, #st{on_inject = undefined}) -> ok;
run_on_inject(Stanzas, Id, Ref, #st{on_inject = {M, F}}) ->
    Conn = self(),
    _ = spawn(fun() ->
                      _ = M:F(Stanzas),
                      Id =:= 0 orelse gen_server:cast(Conn, {inject_ack, Ref, Id})
              end),
    ok.

%% The last list is kept on disk, so that after an ejabberd restart the shim
%% knows which JIDs matter even before the sidecar answers. Not what it
%% owned: that may have changed meanwhile.
save_watch(_W, #st{watch_file = undefined}) -> ok;
save_watch(#{shops := Shops, agents := Agents}, #st{watch_file = File}) ->
    case file:write_file(File, term_to_binary(#{shops => Shops, agents => Agents})) of
        ok -> ok;
        {error, Why} -> ?WARNING_MSG("consult_grpc: cannot save the watch list to ~ts: ~p", [File, Why])
    end.

load_watch(undefined, St) -> St;
load_watch(File, St) ->
    case file:read_file(File) of
        {ok, Bin} ->
            try binary_to_term(Bin, [safe]) of
                #{shops := _, agents := _} = W -> store_watch(W, St);
                _ -> St
            catch _:_ -> St
            end;
        {error, _} -> St
    end.

%% Insert the new list, then delete whatever is left from older ones, so
%% readers never see an empty table in between.
store_watch(#{shops := Shops, agents := Agents}, St = #st{name = Tab, watch_gen = G}) ->
    Gen = G + 1,
    ets:insert(Tab, [{{shop, J}, Gen} || J <- Shops] ++ [{{agent, J}, Gen} || J <- Agents]),
    ets:select_delete(Tab, [{{{Kind, '_'}, '$1'}, [{'=/=', '$1', Gen}], [true]} || Kind <- [shop, agent]]),
    St#st{watch_gen = Gen}.

%%% Breaker and published state

%% Whether a filter request may go: closed; open (fail fast); or probe, the
%% one request that tests the sidecar once the cooldown is over.
gate(#st{breaker = closed}) -> closed;
gate(#st{breaker = {open, Until}, probe = undefined}) ->
    case now_ms() >= Until of
        true -> probe;
        false -> open
    end;
gate(#st{}) -> open.

breaker_failure(Seq, St = #st{failures = F, breaker = B, threshold = T, cooldown = C, probe = Probe}) ->
    case B of
        closed when F + 1 >= T ->
            ?WARNING_MSG("consult_grpc: circuit breaker of ~ts open after ~b timeouts in a row",
                         [St#st.authority, F + 1]),
            publish(St#st{failures = F + 1, breaker = {open, now_ms() + C}});
        {open, _} when Seq =:= Probe ->
            %% The probe failed: another cooldown.
            publish(St#st{failures = F + 1, breaker = {open, now_ms() + C}, probe = undefined});
        _ ->
            St#st{failures = F + 1}
    end.

breaker_success(St = #st{breaker = closed}) ->
    St#st{failures = 0};
breaker_success(St) ->
    ?INFO_MSG("consult_grpc: circuit breaker of ~ts closed, the sidecar answers again", [St#st.authority]),
    publish(St#st{failures = 0, breaker = closed, probe = undefined}).

publish(St = #st{name = Tab, conn = Conn, breaker = Breaker, probe = Probe}) ->
    Published = case {Breaker, Probe} of
                    {{open, _}, Seq} when Seq =/= undefined -> probing;
                    _ -> Breaker
                end,
    ets:insert(Tab, {status, Conn =/= undefined, Published}),
    case Conn of
        undefined ->
            ets:delete(Tab, told),
            disown(St);
        _ -> St
    end.

notify_dropped(St = #st{notify_dropped = N, drop_log = {Next, Unlogged}}) ->
    Now = now_ms(),
    case Now >= Next of
        true ->
            ?WARNING_MSG("consult_grpc: the sidecar at ~ts does not take notifications fast enough; "
                         "~b queued, dropped ~b session/presence notifications (~b in all); "
                         "its view of the agents may be stale until the next reconnect",
                         [St#st.authority, ?MAX_QUEUED_NOTIFY, Unlogged + 1, N + 1]),
            St#st{notify_dropped = N + 1, drop_log = {Now + ?DROP_LOG_EVERY, 0}};
        false ->
            St#st{notify_dropped = N + 1, drop_log = {Next, Unlogged + 1}}
    end.

status_map(St = #st{breaker = B, conn = Conn}) ->
    Breaker = case B of
                  closed -> closed;
                  {open, Until} ->
                      case now_ms() >= Until of true -> half_open; false -> open end
              end,
    ConnInfo = case Conn of
                   undefined ->
                       #{streams => 0, notifications_queued => 0};
                   #conn{streams = Streams, main = Main} ->
                       Queued = case Streams of
                                    #{Main := #stream{out_notifies = Q}} -> Q;
                                    _ -> 0
                                end,
                       #{streams => map_size(Streams), notifications_queued => Queued,
                         next_stream_id => Conn#conn.next_stream,
                         peer_settings => #{max_concurrent_streams => Conn#conn.peer_max_streams,
                                            header_table_size => Conn#conn.peer_table_size,
                                            max_frame_size => Conn#conn.max_frame,
                                            initial_window_size => Conn#conn.peer_window}}
               end,
    ConnInfo#{running => true, name => St#st.name, sidecar => St#st.authority,
              tls => St#st.transport =/= tcp,
              sidecar_id => St#st.sidecar_id, owned => map_size(St#st.claims),
              connected => Conn =/= undefined, breaker => Breaker,
              probe_in_flight => St#st.probe =/= undefined,
              consecutive_timeouts => St#st.failures, pending => map_size(St#st.pending),
              reconnect_attempts => St#st.attempts, draining => length(St#st.draining),
              notifications_dropped => St#st.notify_dropped,
              keepalive => #{interval => St#st.keepalive_interval,
                             timeout => St#st.keepalive_timeout}}.

now_ms() -> erlang:monotonic_time(millisecond).

%%% Sending

send(Data, #conn{sock = Sock}) ->
    %% A failed send is reported as a message so that failure handling
    %% happens in one place, outside whatever is sending.
    case consult_transport:send(Sock, Data) of
        ok -> ok;
        {error, Reason} -> self() ! {send_failed, Sock, Reason}, ok
    end.

open_stream(Path, ExtraHeaders, Kind, C = #conn{next_stream = Id, streams = Streams}, St) ->
    Block = consult_hpack:encode(
              [{<<":method">>, <<"POST">>}, {<<":scheme">>, St#st.scheme},
               {<<":path">>, Path}, {<<":authority">>, St#st.authority},
               {<<"content-type">>, <<"application/grpc">>}, {<<"te">>, <<"trailers">>}
               | St#st.auth_headers ++ ExtraHeaders]),
    send(consult_h2:headers(Id, Block, false, C#conn.max_frame), C),
    Stream = #stream{id = Id, kind = Kind, send_win = C#conn.peer_window},
    {Id, C#conn{next_stream = Id + 2, streams = Streams#{Id => Stream}}}.

%% Queues one length-prefixed gRPC message on a stream and sends what the
%% flow-control windows allow.
send_message(Id, Msg, Kind, Fin, C = #conn{streams = Streams}) ->
    case Streams of
        #{Id := S = #stream{out = Out, out_bytes = Bytes, out_notifies = N}} ->
            Framed = iolist_to_binary([0, <<(iolist_size(Msg)):32>>, Msg]),
            N1 = case Kind of notify -> N + 1; other -> N end,
            flush_stream(S#stream{out = queue:in({Kind, Framed}, Out),
                                  out_bytes = Bytes + byte_size(Framed),
                                  out_notifies = N1, out_fin = Fin}, C);
        _ ->
            C
    end.

flush(C = #conn{streams = Streams}) ->
    lists:foldl(fun(Id, Acc) -> flush_stream(maps:get(Id, Acc#conn.streams), Acc) end,
                C, lists:sort(maps:keys(Streams))).

flush_stream(S = #stream{out_bytes = 0}, C) ->
    store_stream(S, C);
flush_stream(S = #stream{id = Id, out_bytes = Bytes, send_win = SWin}, C = #conn{send_win = CWin}) ->
    case lists:min([CWin, SWin, C#conn.max_frame, Bytes]) of
        N when N =< 0 ->
            store_stream(S, C);  %% window exhausted: wait for WINDOW_UPDATE
        N ->
            {Chunk, S1} = take_bytes(N, S, []),
            Fin = S1#stream.out_bytes =:= 0 andalso S1#stream.out_fin,
            send(consult_h2:data(Id, Chunk, Fin), C),
            flush_stream(S1#stream{send_win = SWin - N}, C#conn{send_win = CWin - N})
    end.

%% Takes N bytes off the front of a stream's queue (splitting a message if
%% need be); a notification leaves the count once all of it is taken.
take_bytes(0, S, Acc) ->
    {lists:reverse(Acc), S};
take_bytes(N, S = #stream{out = Out, out_bytes = Bytes, out_notifies = Notifies}, Acc) ->
    {{value, {Kind, Bin}}, Out1} = queue:out(Out),
    case byte_size(Bin) of
        Size when Size =< N ->
            Notifies1 = case Kind of notify -> Notifies - 1; other -> Notifies end,
            take_bytes(N - Size, S#stream{out = Out1, out_bytes = Bytes - Size,
                                          out_notifies = Notifies1}, [Bin | Acc]);
        _ ->
            <<Part:N/binary, Rest/binary>> = Bin,
            {lists:reverse(Acc, [Part]),
             S#stream{out = queue:in_r({Kind, Rest}, Out1), out_bytes = Bytes - N}}
    end.

store_stream(S = #stream{id = Id}, C = #conn{streams = Streams}) ->
    C#conn{streams = Streams#{Id => S}}.
