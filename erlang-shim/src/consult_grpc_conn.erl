%% One connection to a sidecar (started by consult_grpc:start_link/1): a
%% gRPC client over HTTP/2 that keeps one long-lived bidi FilterStream call
%% open and correlates verdicts to callers by seq; unary Filter calls get
%% streams of their own.
%%
%% The process owns the socket, the timers and the callers waiting for a
%% verdict; consult_grpc_http2 runs the gRPC calls over each HTTP/2
%% connection (driving the pure consult_h2_machine), consult_sidecar
%% handles what the sidecar says on the main stream, consult_breaker is the
%% circuit breaker.
%%
%% Transport: plain TCP (h2c), or TLS with ALPN h2 (consult_transport). A
%% failed handshake is a failed connect like any other.
%%
%% Failure policy: the process never crashes because of the sidecar. It starts
%% disconnected, connects from handle_info with exponential backoff, and on any
%% connection or protocol failure answers the callers waiting on that
%% connection with {error, unavailable} and reconnects.
%%
%% Liveness: a PING every keepalive_interval; no ACK within keepalive_timeout
%% and the connection is closed (its callers get unavailable at once) and
%% made again.
%%
%% GOAWAY from the sidecar: the connection is kept for what it still owes
%% (streams up to the GOAWAY's last-stream-id) and a new connection is made at
%% once for new requests. Requests on streams the sidecar did not take fail
%% as unavailable. The same happens, initiated by us, when stream ids run out.
-module(consult_grpc_conn).
-behaviour(gen_server).

-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-include("logger.hrl").

-define(MAX_PENDING, 10000).
%% Notifications waiting for the send window; more are dropped and counted.
-define(MAX_QUEUED_NOTIFY, 10000).
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

%% There is at most one current connection (new requests go there) and any
%% number of draining ones (after a GOAWAY).
-type conn() :: consult_grpc_http2:conn().

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
    keepalive_interval :: pos_integer() | infinity,
    keepalive_timeout :: pos_integer(),
    backoff_min :: pos_integer(),
    backoff_max :: pos_integer(),
    max_stream_id :: pos_integer(),
    conn = undefined :: undefined | conn(),
    draining = [] :: [conn()],
    connect_now = false :: boolean(),          %% connect as soon as the current input is handled
    reconnect_timer = undefined :: undefined | reference(),
    seq = 0 :: non_neg_integer(),
    %% Callers waiting for a verdict, and the connection their request went on.
    pending = #{} :: #{non_neg_integer() => {gen_server:from(), reference(), reference()}},
    backoff :: pos_integer(),
    attempts = 0 :: non_neg_integer(),
    breaker :: consult_breaker:breaker(),
    ping_seq = 0 :: non_neg_integer(),
    notify_dropped = 0 :: non_neg_integer(),
    %% Rate limit of the drop warning: {next warning at (monotonic ms), drops not yet logged}.
    drop_log = {0, 0} :: {integer(), non_neg_integer()},
    %% What became of the stanzas callers picked this connection for, since the
    %% process started (ejabberdctl consult_status): kept here, where each of
    %% these events is handled anyway, so counting costs callers nothing.
    counts = #{forwarded => 0, verdicts => 0, timeouts => 0, failed => 0}
        :: #{forwarded | verdicts | timeouts | failed => non_neg_integer()},
    %% Why the last connection attempt failed or the last connection ended.
    last_error = undefined :: term(),
    sidecar :: consult_sidecar:state()
}).

%%% gen_server

%% Opts: see consult_grpc:start_link/1.
-spec init(map()) -> {ok, #st{}}.
init(Opts = #{host := Host, port := Port, hosts := Hosts, node := Node}) ->
    Name = maps:get(name, Opts, consult_grpc),
    %% Rows: {status, Connected, consult_breaker:published()}, read by
    %% consult_grpc; and those of consult_sidecar.
    ets:new(Name, [named_table, public, set, {read_concurrency, true}]),
    %% {nodeup, N} / {nodedown, N} for visible nodes (ejabberdctl's are hidden).
    ok = net_kernel:monitor_nodes(true),
    HostStr = unicode:characters_to_list(Host),
    Authority = iolist_to_binary([HostStr, $:, integer_to_list(Port)]),
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
             authority = Authority,
             transport = Transport,
             scheme = case Transport of tcp -> <<"http">>; _ -> <<"https">> end,
             node = Node,
             hosts = Hosts,
             auth_headers = AuthHeaders,
             connect_timeout = maps:get(connect_timeout, Opts, 1000),
             keepalive_interval = maps:get(keepalive_interval, Opts, ?KEEPALIVE_INTERVAL),
             keepalive_timeout = maps:get(keepalive_timeout, Opts, ?KEEPALIVE_TIMEOUT),
             backoff_min = BackoffMin,
             backoff_max = maps:get(backoff_max, Opts, ?BACKOFF_MAX),
             backoff = BackoffMin,
             max_stream_id = maps:get(max_stream_id, Opts, 16#7fffffff),
             breaker = consult_breaker:new(maps:get(breaker_threshold, Opts, 5),
                                           maps:get(breaker_cooldown, Opts, 5000)),
             sidecar = consult_sidecar:new(Name, Authority, Opts)},
    self() ! connect,
    {ok, publish(St)}.

-spec handle_call(status | {filter, binary(), binary(), pos_integer(), integer()}
                  | {unary, binary(), binary(), pos_integer()}, gen_server:from(), #st{}) ->
          {reply, term(), #st{}} | {noreply, #st{}}.
handle_call(status, _From, St) ->
    {reply, status_map(St), St};
handle_call({filter, _, _, _, _}, _From, St = #st{conn = undefined}) ->
    {reply, {error, unavailable}, count(failed, 1, St)};
handle_call({filter, _, _, _, _}, _From, St = #st{pending = P}) when map_size(P) >= ?MAX_PENDING ->
    {reply, {error, overloaded}, count(failed, 1, St)};
handle_call({filter, Host, Stanza, Timeout, Deadline}, From, St = #st{breaker = B}) ->
    case consult_breaker:gate(B, now_ms()) of
        open ->
            {reply, {error, circuit_open}, count(failed, 1, St)};
        Gate ->
            #st{seq = Seq0, pending = P, conn = C} = St,
            Seq = Seq0 + 1,
            T0 = erlang:monotonic_time(),
            Msg = consult_pb:encode_shim_message(
                    {filter, #{seq => Seq, hook => filter_packet, host => Host, stanza => Stanza,
                               deadline_ms => Deadline}}),
            TRef = erlang:start_timer(Timeout, self(), {filter_timeout, Seq}),
            St1 = St#st{seq = Seq, pending = P#{Seq => {From, TRef, consult_grpc_http2:ref(C)}}},
            St2 = case Gate of
                      probe -> set_breaker(consult_breaker:probing(Seq, B), St1);
                      closed -> St1
                  end,
            C1 = consult_grpc_http2:send(Msg, undefined, C),
            consult_timing:add(request, erlang:monotonic_time() - T0),
            {noreply, count(forwarded, 1, St2#st{conn = C1})}
    end;
handle_call({unary, _, _, _}, _From, St = #st{conn = undefined}) ->
    {reply, {error, unavailable}, St};
handle_call({unary, _, _, _} = Req, From, St) ->
    unary(Req, From, true, St).

%% Stream ids used up: a new connection, this one drains; tried once more there.
unary({unary, Host, Stanza, Timeout} = Req, From, Retry, St = #st{conn = C}) ->
    Msg = consult_pb:encode_filter_request(#{seq => 0, hook => filter_packet, host => Host, stanza => Stanza}),
    case consult_grpc_http2:unary(Msg, From, Timeout, C) of
        {ok, C1} ->
            {noreply, St#st{conn = C1}};
        {error, stream_ids_exhausted} when Retry ->
            ?INFO_MSG("consult_grpc: stream ids used up on the connection to ~ts, opening a new one",
                      [St#st.authority]),
            St1 = connect_now(maybe_drained(retire(no_error, St))),
            case St1#st.conn of
                undefined -> {reply, {error, unavailable}, St1};
                _ -> unary(Req, From, false, St1)
            end;
        {error, too_many_streams} ->
            %% SETTINGS_MAX_CONCURRENT_STREAMS: the sidecar would refuse the stream.
            {reply, {error, too_many_streams}, St};
        {error, _} ->
            {reply, {error, unavailable}, St}
    end.

-spec handle_cast({notify, binary()} | {inject_ack, reference(), pos_integer()}
                  | {erase_user_ack, reference(), consult_pb:erase_user_ack()}, #st{}) -> {noreply, #st{}}.
handle_cast({notify, Msg}, St = #st{conn = C}) when C =/= undefined ->
    case consult_grpc_http2:queued(notify, C) >= ?MAX_QUEUED_NOTIFY of
        true -> {noreply, notify_dropped(St)};
        false -> {noreply, St#st{conn = consult_grpc_http2:send(Msg, notify, C)}}
    end;
handle_cast({notify, _}, St) ->
    {noreply, St};
%% From consult_sidecar, once on_inject has routed the stanzas. An ack for an
%% earlier main stream is dropped: the sidecar sends that Inject again on the new one.
handle_cast({inject_ack, Ref, Id}, St = #st{conn = C}) when C =/= undefined ->
    case consult_grpc_http2:ref(C) of
        Ref -> {noreply, St#st{conn = consult_grpc_http2:send(consult_sidecar:inject_ack(Id), undefined, C)}};
        _ -> {noreply, St}
    end;
handle_cast({inject_ack, _Ref, _Id}, St) ->
    {noreply, St};
%% From consult_sidecar, once on_erase is done. One for an earlier stream is
%% dropped: the sidecar sends the (idempotent) erasure again elsewhere.
handle_cast({erase_user_ack, Ref, Ack}, St = #st{conn = C}) when C =/= undefined ->
    case consult_grpc_http2:ref(C) of
        Ref -> {noreply, St#st{conn = consult_grpc_http2:send(consult_sidecar:erase_user_ack(Ack), undefined, C)}};
        _ -> {noreply, St}
    end;
handle_cast({erase_user_ack, _Ref, _Ack}, St) ->
    {noreply, St}.

-spec handle_info(term(), #st{}) -> {noreply, #st{}}.
handle_info(connect, St = #st{conn = undefined}) ->
    {noreply, connect(St#st{reconnect_timer = undefined})};
handle_info({send_failed, Sock, Reason}, St) ->
    {noreply, sock_down(Sock, {send_failed, Reason}, St)};
handle_info({timeout, TRef, {filter_timeout, Seq}}, St = #st{pending = P}) ->
    case maps:take(Seq, P) of
        {{From, TRef, _ConnRef}, P1} ->
            gen_server:reply(From, {error, timeout}),
            B = consult_breaker:failure(Seq, now_ms(), St#st.breaker),
            {noreply, maybe_drained(set_breaker(B, count(timeouts, 1, St#st{pending = P1})))};
        _ ->
            {noreply, St}
    end;
handle_info({timeout, TRef, {unary_timeout, Ref, Id}}, St) ->
    case find_conn(Ref, St) of
        undefined ->
            {noreply, St};
        C ->
            case consult_grpc_http2:unary_timeout(Id, TRef, C) of
                {ok, C1} -> {noreply, maybe_drained(put_conn(C1, St))};
                ignore -> {noreply, St}
            end
    end;
handle_info({keepalive, Ref}, St = #st{conn = C}) when C =/= undefined ->
    case {consult_grpc_http2:ref(C), consult_grpc_http2:ping_timer(C)} of
        {Ref, undefined} ->
            N = St#st.ping_seq + 1,
            schedule_keepalive(Ref, St),
            {noreply, St#st{ping_seq = N, conn = consult_grpc_http2:ping(<<N:64>>, St#st.keepalive_timeout, C)}};
        {Ref, _} ->
            %% The previous PING is still out; its timer decides.
            schedule_keepalive(Ref, St),
            {noreply, St};
        _ ->
            {noreply, St}
    end;
handle_info({timeout, TRef, {ping_timeout, Ref}}, St = #st{conn = C}) when C =/= undefined ->
    case {consult_grpc_http2:ref(C), consult_grpc_http2:ping_timer(C)} of
        {Ref, TRef} -> {noreply, conn_down(C, keepalive_timeout, St)};
        _ -> {noreply, St}
    end;
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

%% Tells the sidecar we are going.
-spec terminate(term(), #st{}) -> ok.
terminate(_Reason, St) ->
    lists:foreach(fun consult_grpc_http2:close/1, all_conns(St)).

%%% Connection lifecycle

connect(St = #st{host = Host, port = Port, attempts = Attempts, transport = Transport}) ->
    cancel_reconnect(St),
    case consult_transport:connect(Host, Port, Transport, St#st.connect_timeout) of
        {ok, Sock} ->
            ?INFO_MSG("consult_grpc: connected to sidecar ~s:~b~s", [Host, Port, consult_transport:describe(Transport)]),
            Hello = consult_sidecar:hello(St#st.node, St#st.hosts, consult_grpc:shim_version()),
            C = consult_grpc_http2:open(Sock, #{scheme => St#st.scheme, authority => St#st.authority,
                                                auth_headers => St#st.auth_headers,
                                                max_stream_id => St#st.max_stream_id}, Hello),
            consult_transport:activate(Sock),
            schedule_keepalive(consult_grpc_http2:ref(C), St),
            publish(St#st{conn = C, attempts = 0, connect_now = false, reconnect_timer = undefined,
                          sidecar = consult_sidecar:connected(St#st.sidecar)});
        {error, Reason} ->
            %% Only the first failure of a series is worth a log line.
            Attempts =:= 0 andalso
                ?WARNING_MSG("consult_grpc: sidecar ~s:~b unavailable~s (~p)~ts, retrying",
                             [Host, Port, consult_transport:describe(Transport), Reason,
                              connect_hint(Reason)]),
            schedule_reconnect(St#st{connect_now = false, last_error = Reason})
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

%% A node that left takes its users' presence with it: the sidecar must know
%% at once. Not queued while disconnected (the next Hello has the members).
cluster_event(Node, Up, St = #st{conn = C}) when C =/= undefined ->
    St#st{conn = consult_grpc_http2:send(consult_sidecar:cluster_event(Node, Up), undefined, C)};
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
retire(Code, St = #st{conn = C}) ->
    St#st{conn = undefined, draining = [consult_grpc_http2:retire(Code, C) | St#st.draining],
          connect_now = true}.

%% A connection ends: everyone still waiting on it gets unavailable. The
%% current one is made again after a backoff; a draining one just goes.
conn_down(C, Reason, St0) ->
    Ref = consult_grpc_http2:ref(C),
    Unary = consult_grpc_http2:down(C),
    St = remove_conn(Ref, St0),
    {Failed, Pending} = maps:fold(
                          fun(Seq, {From, TRef, R}, {F, P}) when R =:= Ref ->
                                  erlang:cancel_timer(TRef),
                                  gen_server:reply(From, {error, unavailable}),
                                  {[Seq | F], maps:remove(Seq, P)};
                             (_, _, Acc) ->
                                  Acc
                          end, {[], St#st.pending}, St#st.pending),
    Lost = length(Failed) + Unary,
    St1 = count(failed, length(Failed),
                St#st{pending = Pending, breaker = consult_breaker:lost(Failed, St#st.breaker)}),
    case consult_grpc_http2:role(C) of
        draining ->
            Lost > 0 andalso
                ?WARNING_MSG("consult_grpc: the connection to ~ts that was going away ended (~p); "
                             "~b requests on it failed", [St#st.authority, Reason, Lost]),
            publish(St1);
        current ->
            log_down(Reason, Lost, St1),
            Lived = now_ms() - consult_grpc_http2:since(C),
            St2 = case refused(Reason) =:= false andalso Lived >= ?HEALTHY_AFTER of
                      true -> St1#st{backoff = St1#st.backoff_min};  %% a new series
                      false -> St1  %% refused, or failed at once: keep backing off
                  end,
            schedule_reconnect(St2#st{last_error = Reason})
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
    Done = [C || C <- Draining, not maps:is_key(consult_grpc_http2:ref(C), Owing),
                 not consult_grpc_http2:owes(C)],
    lists:foreach(fun(C) ->
                          ?INFO_MSG("consult_grpc: the old connection to ~ts answered everything "
                                    "it owed; closed", [St#st.authority]),
                          consult_grpc_http2:close(C)
                  end, Done),
    publish(St#st{draining = Draining -- Done}).

%%% Connections by socket and by ref

all_conns(#st{conn = undefined, draining = D}) -> D;
all_conns(#st{conn = C, draining = D}) -> [C | D].

find_conn(Ref, St) ->
    case [C || C <- all_conns(St), consult_grpc_http2:ref(C) =:= Ref] of
        [C] -> C;
        [] -> undefined
    end.

find_sock(Sock, St) ->
    case [C || C <- all_conns(St), consult_grpc_http2:sock(C) =:= Sock] of
        [C] -> C;
        [] -> undefined
    end.

%% Puts a connection back where its role says: current, or among the draining.
put_conn(C, St) ->
    St1 = remove_conn(consult_grpc_http2:ref(C), St),
    case consult_grpc_http2:role(C) of
        current -> St1#st{conn = C};
        draining -> St1#st{draining = [C | St1#st.draining]}
    end.

remove_conn(Ref, St) ->
    Conn = case St#st.conn of
               C when C =/= undefined -> case consult_grpc_http2:ref(C) of Ref -> undefined; _ -> C end;
               undefined -> undefined
           end,
    St#st{conn = Conn, draining = [D || D <- St#st.draining, consult_grpc_http2:ref(D) =/= Ref]}.

sock_down(Sock, Reason, St) ->
    case find_sock(Sock, St) of
        undefined -> St;
        C -> maybe_drained(conn_down(C, Reason, St))
    end.

%%% Input

input(Sock, Data, St) ->
    case find_sock(Sock, St) of
        undefined ->
            St;
        C ->
            {Result, C1, St1} = case consult_grpc_http2:input(Data, C, fun sidecar_message/4, St) of
                                    {ok, C2, S} -> {ok, C2, S};
                                    {down, Reason, C2, S} -> {{down, Reason}, C2, S}
                                end,
            %% The sidecar's GOAWAY: new requests go to a new connection at once.
            GoingAway = consult_grpc_http2:role(C) =/= consult_grpc_http2:role(C1),
            St2 = St1#st{connect_now = St1#st.connect_now orelse GoingAway},
            St3 = case Result of
                      ok -> put_conn(C1, St2);
                      {down, Why} -> conn_down(C1, Why, St2)
                  end,
            connect_now(maybe_drained(St3))
    end.

%% A message on a main stream: a verdict for the caller waiting on its seq,
%% or for consult_sidecar.
sidecar_message(Msg, Role, Ref, St = #st{sidecar = S}) ->
    T0 = erlang:monotonic_time(),
    case consult_sidecar:message(Msg, Role, Ref, S) of
        {verdict, Seq, V, S1} ->
            case maps:take(Seq, St#st.pending) of
                {{From, TRef, _}, P1} ->
                    erlang:cancel_timer(TRef),
                    gen_server:reply(From, {verdict, V}),  % decoded by consult_grpc:filter/4, in the caller
                    consult_timing:add(verdict, erlang:monotonic_time() - T0),
                    set_breaker(consult_breaker:success(St#st.breaker),
                                count(verdicts, 1, St#st{pending = P1, sidecar = S1}));
                error ->
                    St#st{sidecar = S1}  %% late: the caller already got {error, timeout}
            end;
        {ok, S1} ->
            St#st{sidecar = S1}
    end.

%%% Breaker and published state

%% A new breaker state, logged when it opens or closes, published when what
%% callers see of it changes.
set_breaker(B1, St = #st{breaker = B0}) ->
    case {consult_breaker:state(B0), consult_breaker:state(B1)} of
        {closed, {open, _}} ->
            ?WARNING_MSG("consult_grpc: circuit breaker of ~ts open after ~b timeouts in a row",
                         [St#st.authority, consult_breaker:failures(B1)]);
        {{open, _}, closed} ->
            ?INFO_MSG("consult_grpc: circuit breaker of ~ts closed, the sidecar answers again",
                      [St#st.authority]);
        _ ->
            ok
    end,
    case consult_breaker:published(B0) =:= consult_breaker:published(B1) of
        true -> St#st{breaker = B1};
        false -> publish(St#st{breaker = B1})
    end.

publish(St = #st{name = Tab, conn = Conn, breaker = B, sidecar = S}) ->
    ets:insert(Tab, {status, Conn =/= undefined, consult_breaker:published(B)}),
    case Conn of
        undefined -> St#st{sidecar = consult_sidecar:disconnected(S)};
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

status_map(St = #st{conn = Conn}) ->
    ConnInfo = case Conn of
                   undefined -> #{streams => 0, notifications_queued => 0};
                   _ -> consult_grpc_http2:info(Conn)
               end,
    lists:foldl(fun maps:merge/2, ConnInfo,
                [consult_sidecar:status(St#st.sidecar),
                 consult_breaker:status(St#st.breaker, now_ms()),
                 #{running => true, name => St#st.name, sidecar => St#st.authority,
                   tls => St#st.transport =/= tcp, connected => Conn =/= undefined,
                   pending => map_size(St#st.pending), reconnect_attempts => St#st.attempts,
                   draining => length(St#st.draining), notifications_dropped => St#st.notify_dropped,
                   keepalive => #{interval => St#st.keepalive_interval,
                                  timeout => St#st.keepalive_timeout},
                   told => consult_sidecar:told(St#st.name),
                   last_error => St#st.last_error, reconnect_in => reconnect_in(St)},
                 St#st.counts]).

%% ms until the next connection attempt, while one is scheduled.
reconnect_in(#st{reconnect_timer = undefined}) -> undefined;
reconnect_in(#st{reconnect_timer = TRef}) ->
    case erlang:read_timer(TRef) of
        false -> 0;  %% due: the attempt is next in the queue
        Ms -> Ms
    end.

count(_Key, 0, St) -> St;
count(Key, N, St = #st{counts = Counts}) -> St#st{counts = Counts#{Key := maps:get(Key, Counts) + N}}.

now_ms() -> erlang:monotonic_time(millisecond).
