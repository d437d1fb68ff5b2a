%%% mod_consult: hands consult traffic to the routing sidecar over gRPC and
%%% applies its verdict (pass / rewrite / drop / reject, plus extra stanzas).
%%%
%%% ejabberd's xmpp codec keeps no unknown attributes (realfrom, qchatid,
%%% channelid, body id...) and reads type='consult' as normal. So the raw
%%% element a client sent is kept in the packet's meta on the way in
%%% (c2s_handle_recv + user_send_packet), and the element the sidecar wrote is
%%% what the recipient's c2s finally puts on the wire (c2s_filter_send).
-module(mod_consult).
-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_opt_type/1, mod_doc/0]).
-export([tls_problems/1, tls_config/2]).
-export([filter_packet/1, c2s_handle_recv/3, user_send_packet/1, c2s_filter_send/1,
         sm_register_connection_hook/3, sm_remove_connection_hook/3,
         set_presence_hook/4, unset_presence_hook/4, report_agents/2,
         route_injected/1]).

-include("xmpp.hrl").
-include("logger.hrl").

-define(CONN, consult_grpc).
%% Our private child carrying the element to write, so that copies ejabberd
%% stores (offline messages, MAM) and re-routes later keep QChat's attributes.
-define(NS_RAW, <<"urn:xmpp:consult:raw:0">>).
-define(SETTINGS, {?MODULE, settings}).
-define(CONN_OPTS, {?MODULE, conn_opts}).
-define(FAILURE_LOG, {?MODULE, failure_log}).
-define(FAILURE_LOG_EVERY, 10000).  % ms between two warnings about sidecar failures
-define(HELPERS, [consult_hpack, consult_h2, consult_pb, consult_owners, consult_transport, consult_grpc]).
%% Options of the node's connections to the sidecars: every virtual host must
%% agree on them. The others (timeout, failure_policy) are per host.
-define(CONN_OPTIONS, [sidecar_host, sidecar_port, sidecar_token, sidecars, breaker_threshold,
                       breaker_cooldown, keepalive_interval, keepalive_timeout, sidecar_tls,
                       sidecar_cafile, sidecar_certfile, sidecar_keyfile, sidecar_tls_server_name]).
-define(DEFAULT_SETTINGS, #{timeout => 500, failure_policy => reject}).
-define(HOST_HOOKS, [{c2s_handle_recv, c2s_handle_recv, 50},
                     {user_send_packet, user_send_packet, 1},
                     {c2s_filter_send, c2s_filter_send, 1000},
                     {sm_register_connection_hook, sm_register_connection_hook, 50},
                     {sm_remove_connection_hook, sm_remove_connection_hook, 50},
                     {set_presence_hook, set_presence_hook, 50},
                     {unset_presence_hook, unset_presence_hook, 50}]).

%%% gen_mod

%% A host whose connection options differ from another host's is refused:
%% the node has one connection, and silently taking one host's options over
%% another's would be worse than a clear error.
-spec start(binary(), gen_mod:opts()) -> ok | {error, term()}.
start(Host, Opts) ->
    case {tls_problems(conn_opts(Opts)), conflicts(Host, Opts)} of
        {[_ | _] = Problems, _} ->
            ?CRITICAL_MSG("consult: ~ts; mod_consult not started for ~ts", [lists:join("; ", Problems), Host]),
            {error, {bad_tls_options, Problems}};
        {[], []} ->
            put_settings(Host, Opts),
            new_failure_log(),
            load_helpers(),
            ok = start_connections(Opts),
            %% filter_packet is global: adding it again for another host is a no-op.
            ejabberd_hooks:add(filter_packet, global, ?MODULE, filter_packet, 50),
            [ejabberd_hooks:add(Hook, Host, ?MODULE, Fun, Seq) || {Hook, Fun, Seq} <- ?HOST_HOOKS],
            ok;
        {[], Conflicts} ->
            ?CRITICAL_MSG("~ts", [conflict_text(Host, Conflicts, "mod_consult not started for this host")]),
            {error, {conflicting_connection_options, Conflicts}}
    end.

-spec stop(binary()) -> ok.
stop(Host) ->
    [ejabberd_hooks:delete(Hook, Host, ?MODULE, Fun, Seq) || {Hook, Fun, Seq} <- ?HOST_HOOKS],
    persistent_term:put(?SETTINGS, maps:remove(Host, persistent_term:get(?SETTINGS, #{}))),
    case gen_mod:is_loaded_elsewhere(Host, ?MODULE) of
        true -> ok;
        false ->
            ejabberd_hooks:delete(filter_packet, global, ?MODULE, filter_packet, 50),
            stop_connections(),
            ?CONN:set_connections([]),
            persistent_term:erase(?CONN_OPTS),
            ok
    end.

%% timeout and failure_policy apply from the next stanza. Changed connection
%% options make the shim reconnect with them; reload is called once per host,
%% the first call reconnects and the others find nothing left to do. New
%% connection options that the hosts disagree on are not applied (the
%% connection keeps its current ones) and logged as an error.
-spec reload(binary(), gen_mod:opts(), gen_mod:opts()) -> ok.
reload(Host, NewOpts, OldOpts) ->
    [?INFO_MSG("consult: ~ts for ~ts changed: ~ts", [Opt, Host, change(Opt, Old, New)])
     || {Opt, Old, New} <- [{O, gen_mod:get_opt(O, OldOpts), gen_mod:get_opt(O, NewOpts)}
                            || O <- [timeout, failure_policy]],
        Old =/= New],
    put_settings(Host, NewOpts),
    Current = persistent_term:get(?CONN_OPTS, undefined),
    case conn_opts(NewOpts) of
        Current -> ok;
        New ->
            case {tls_problems(New), conflicts(Host, NewOpts)} of
                {[_ | _] = Problems, _} ->
                    ?CRITICAL_MSG("consult: ~ts; the new connection options are not applied",
                                  [lists:join("; ", Problems)]),
                    ok;
                {[], []} ->
                    Changes = case Current of
                                  undefined -> "";
                                  _ -> [" (", lists:join("; ", [[atom_to_list(K), ": ",
                                                                  change(K, maps:get(K, Current), V)]
                                                                 || {K, V} <- lists:sort(maps:to_list(New)),
                                                                    maps:get(K, Current) =/= V]), ")"]
                              end,
                    ?INFO_MSG("consult: sidecar settings changed, reconnecting to ~ts~ts",
                              [opt_text(addresses(New)), Changes]),
                    stop_connections(),
                    start_connections(NewOpts);
                {[], Conflicts} ->
                    ?CRITICAL_MSG("~ts", [conflict_text(Host, Conflicts,
                                                        "the new connection options are not applied")]),
                    ok
            end
    end.

change(sidecar_token, Old, New) ->
    %% Never in a log.
    case {Old, New} of
        {<<>>, _} -> "set";
        {_, <<>>} -> "removed";
        _ -> "replaced"
    end;
change(_Opt, Old, New) ->
    io_lib:format("~ts -> ~ts", [opt_text(Old), opt_text(New)]).

opt_text(undefined) -> "none";
opt_text(B) when is_binary(B) -> B;
opt_text(I) when is_integer(I) -> integer_to_list(I);
opt_text(A) when is_atom(A) -> atom_to_list(A);
opt_text({Host, Port}) -> [Host, $:, integer_to_list(Port)];
opt_text([]) -> "[]";
opt_text(L) when is_list(L) -> lists:join(", ", [opt_text(X) || X <- L]).

%% What every stanza's verdict path reads, without a gen_mod lookup per stanza.
put_settings(Host, Opts) ->
    Settings = persistent_term:get(?SETTINGS, #{}),
    Mine = #{timeout => gen_mod:get_opt(timeout, Opts),
             failure_policy => gen_mod:get_opt(failure_policy, Opts)},
    case Settings of
        #{Host := Mine} -> ok;
        _ -> persistent_term:put(?SETTINGS, Settings#{Host => Mine})
    end.

%% The stanza's settings: those of the host it goes to, else of the host it
%% comes from, else any host's.
settings(FromHost, ToHost) ->
    case persistent_term:get(?SETTINGS, #{}) of
        #{ToHost := S} -> S;
        #{FromHost := S} -> S;
        All ->
            case maps:values(All) of
                [S | _] -> S;
                [] -> ?DEFAULT_SETTINGS
            end
    end.

%% Hosts (per ejabberd's current config) with mod_consult and other
%% connection options than Opts: [{Host, [{Option, Theirs, Ours}]}].
conflicts(Host, Opts) ->
    Mine = conn_opts(Opts),
    lists:filtermap(
      fun(Other) ->
              case lists:keyfind(?MODULE, 1, ejabberd_option:modules(Other)) of
                  {?MODULE, OtherOpts, _} ->
                      Theirs = conn_opts(OtherOpts),
                      case [{K, maps:get(K, Theirs), V} || {K, V} <- lists:sort(maps:to_list(Mine)),
                                                      maps:get(K, Theirs) =/= V] of
                          [] -> false;
                          Diff -> {true, {Other, Diff}}
                      end;
                  false ->
                      false
              end
      end, [H || H <- ejabberd_option:hosts(), H =/= Host]).

conflict_text(Host, Conflicts, Consequence) ->
    Lines = [io_lib:format("~ts: ~ts ~ts here, ~ts on ~ts", [K, Host, shown(K, Ours), shown(K, Theirs), Other])
             || {Other, Diff} <- Conflicts, {K, Theirs, Ours} <- Diff],
    io_lib:format("consult: the virtual hosts disagree on options of the node's one sidecar connection (~ts); "
                  "~ts. Set ~ts the same for every host (in the top-level modules: section, not in "
                  "host_config).",
                  [lists:join("; ", Lines), Consequence,
                   lists:join(", ", [atom_to_list(O) || O <- ?CONN_OPTIONS])]).

shown(sidecar_token, <<>>) -> "none";
shown(sidecar_token, _) -> "a token";
shown(_, V) -> opt_text(V).

-spec depends(binary(), gen_mod:opts()) -> [{module(), hard | soft}].
depends(_Host, _Opts) -> [].

-spec mod_opt_type(atom()) -> econf:validator().
mod_opt_type(sidecar_host) -> econf:binary();
mod_opt_type(sidecar_port) -> econf:port();
mod_opt_type(sidecar_token) -> econf:binary();
mod_opt_type(sidecars) ->
    %% Unique as written (a list of {Host, Port} would be taken for a map).
    econf:and_then(econf:list(econf:binary("^[^:\\[\\]]+:[0-9]+$"), [unique]),
                   fun(Addrs) -> [sidecar_address(A) || A <- Addrs] end);
mod_opt_type(timeout) -> positive_duration();
mod_opt_type(failure_policy) -> econf:enum([reject, pass]);
mod_opt_type(breaker_threshold) -> econf:pos_int();
mod_opt_type(breaker_cooldown) -> econf:timeout(millisecond);
mod_opt_type(keepalive_interval) ->
    econf:either(econf:enum([infinity]), positive_duration());
mod_opt_type(keepalive_timeout) -> positive_duration();
mod_opt_type(sidecar_tls) -> econf:bool();
mod_opt_type(sidecar_cafile) -> econf:file(read);
mod_opt_type(sidecar_certfile) -> econf:file(read);
mod_opt_type(sidecar_keyfile) -> econf:file(read);
mod_opt_type(sidecar_tls_server_name) -> econf:binary("^[^\\s/]+$").

%% What the TLS options lack or have too much of, as sentences (none: fine).
-spec tls_problems(#{atom() => term()}) -> [string()].
tls_problems(#{sidecar_tls := true} = Conn) ->
    [Text || {true, Text} <-
                 [{maps:get(sidecar_cafile, Conn) =:= undefined,
                   "sidecar_tls: true needs sidecar_cafile (the PEM file of the CA that signed "
                   "the sidecar's certificate)"},
                  {maps:get(sidecar_keyfile, Conn) =/= undefined
                   andalso maps:get(sidecar_certfile, Conn) =:= undefined,
                   "sidecar_keyfile is set but sidecar_certfile is not (the client certificate "
                   "for mutual TLS needs both, or a certfile that holds the key too)"}]];
tls_problems(#{} = Conn) ->
    case [atom_to_list(K) || K <- [sidecar_cafile, sidecar_certfile, sidecar_keyfile, sidecar_tls_server_name],
                             maps:get(K, Conn) =/= undefined] of
        [] -> [];
        Set -> [io_lib:format("~ts set but sidecar_tls is false: the link would not be encrypted; "
                              "set sidecar_tls: true", [lists:join(", ", Set)])]
    end.

%% What consult_grpc takes as its tls option for the sidecar at Host: false,
%% or the files and the name its certificate must carry (sidecar_tls_server_name,
%% else the host the shim connects to).
-spec tls_config(#{atom() => term()}, binary()) -> false | consult_transport:tls_config().
tls_config(#{sidecar_tls := false}, _Host) ->
    false;
tls_config(#{sidecar_tls := true, sidecar_cafile := CaFile} = Conn, Host) ->
    Name = case maps:get(sidecar_tls_server_name, Conn) of
               undefined -> Host;
               Override -> Override
           end,
    Client = [{K, to_list(maps:get(Opt, Conn))}
              || {K, Opt} <- [{certfile, sidecar_certfile}, {keyfile, sidecar_keyfile}],
                 maps:get(Opt, Conn) =/= undefined],
    maps:from_list([{cafile, to_list(CaFile)}, {server_name, to_list(Name)} | Client]).

to_list(B) when is_binary(B) -> unicode:characters_to_list(B);
to_list(L) when is_list(L) -> L.

%% "host:port" (a name or an IPv4 address) -> {Host, Port}.
sidecar_address(Addr) ->
    [Host, Port] = binary:split(Addr, <<":">>),
    {Host, (econf:port())(binary_to_integer(Port))}.

%% "500 ms", "5 s", "1 min", or a bare integer in milliseconds; not 0.
positive_duration() ->
    econf:and_then(econf:timeout(millisecond),
                   fun(Ms) when Ms > 0 -> Ms;
                      (Ms) -> econf:fail({bad_pos_int, Ms})
                   end).

-spec mod_options(binary()) -> [{atom(), term()}].
mod_options(_Host) ->
    [{sidecar_host, <<"127.0.0.1">>}, {sidecar_port, 50051}, {sidecar_token, <<>>}, {sidecars, []},
     {timeout, 500}, {failure_policy, reject}, {breaker_threshold, 5}, {breaker_cooldown, 5000},
     {keepalive_interval, 10000}, {keepalive_timeout, 5000},
     {sidecar_tls, false}, {sidecar_cafile, undefined}, {sidecar_certfile, undefined},
     {sidecar_keyfile, undefined}, {sidecar_tls_server_name, undefined}].

-spec mod_doc() -> map().
mod_doc() ->
    #{desc => ["Routes customer-service (consult) messages through the "
               "consult-router sidecar over gRPC: HTTP/2 over plain TCP (h2c), or over "
               "TLS with sidecar_tls (the sidecar's certificate verified, optionally "
               "a client certificate for mutual TLS). Durations take a unit "
               "(\"500 ms\", \"5 s\", \"1 min\"); a bare number is milliseconds. "
               "The node has one connection per sidecar, shared by its virtual hosts: "
               "sidecar_host, sidecar_port, sidecars, sidecar_token, breaker_*, "
               "keepalive_* and the sidecar_tls* and TLS file options must be the same "
               "for every virtual host (a host that "
               "disagrees is refused); timeout and failure_policy may differ per host "
               "(host_config)."],
      opts => [{sidecar_host, #{value => "Host", desc => "Sidecar address (default 127.0.0.1)."}},
               {sidecar_port, #{value => "Port", desc => "Sidecar gRPC port (default 50051)."}},
               {sidecars, #{value => "[\"Host:Port\", ...]",
                            desc => "Several sidecars side by side, one connection to each "
                                    "(host name or IPv4 address; the same token and "
                                    "breaker/keepalive settings for all). Each shop is "
                                    "decided by the one sidecar whose watch list says it "
                                    "owns the shop: a message to a shop goes to that "
                                    "sidecar only, and while no connected sidecar owns it "
                                    "(say during a takeover) it gets the failure_policy at "
                                    "once. Other consult traffic goes to the first "
                                    "connected sidecar in this order; session and presence "
                                    "notifications to all. Empty (default): the one "
                                    "sidecar at sidecar_host:sidecar_port; when set, those "
                                    "two are not used."}},
               {sidecar_token, #{value => "Token",
                                 desc => "Sent as 'authorization: Bearer <token>' on every gRPC call; "
                                         "the sidecar's grpc.shims must list this node's name with the "
                                         "same token. Empty (default): no token. Sent in clear text unless "
                                         "sidecar_tls is true: without TLS keep the link on loopback or a "
                                         "trusted network."}},
               {sidecar_tls, #{value => "true | false",
                               desc => "Connect to the sidecar(s) over TLS (HTTP/2 negotiated by ALPN "
                                       "h2; the sidecar needs grpc.tls). The sidecar's certificate is "
                                       "verified against sidecar_cafile and must name the host in "
                                       "sidecars or sidecar_host (subjectAltName DNS or IP entry), or "
                                       "sidecar_tls_server_name. A failed handshake is a failed "
                                       "connection: logged, retried with backoff, stanzas get the "
                                       "failure_policy. Default: false (plain h2c)."}},
               {sidecar_cafile, #{value => "Path",
                                  desc => "PEM file of the CA certificate(s) that may sign the "
                                          "sidecar's certificate; required with sidecar_tls: true "
                                          "(the system's CAs are not used). Default: none."}},
               {sidecar_certfile, #{value => "Path",
                                    desc => "PEM client certificate the shim presents (mutual TLS: "
                                            "the sidecar's grpc.tls.clientCa must have signed it); "
                                            "the key too unless sidecar_keyfile is set. The token "
                                            "still applies. Default: none (no client certificate)."}},
               {sidecar_keyfile, #{value => "Path",
                                   desc => "PEM private key of sidecar_certfile (unencrypted). "
                                           "Default: none (the key is in sidecar_certfile)."}},
               {sidecar_tls_server_name, #{value => "Name",
                                           desc => "The name the sidecar's certificate must carry "
                                                   "(a DNS name or an IP address), when it differs from "
                                                   "the address the shim connects to (say, an IP "
                                                   "address in sidecars and a certificate for a name); "
                                                   "also sent as SNI. The same for every sidecar. "
                                                   "Default: the host of each sidecar."}},
               {timeout, #{value => "Duration", desc => "How long a stanza waits for a verdict (default 500 ms)."}},
               {failure_policy, #{value => "reject | pass",
                                  desc => "When the sidecar is down or slow, or no sidecar owns the "
                                          "shop: bounce an error to the sender (reject, default) or "
                                          "deliver unrouted (pass)."}},
               {breaker_threshold, #{value => "N", desc => "Timeouts in a row that open the circuit breaker (default 5)."}},
               {breaker_cooldown, #{value => "Duration",
                                    desc => "How long the open breaker fails fast before one probe "
                                            "request may test the sidecar (default 5 s)."}},
               {keepalive_interval, #{value => "Duration | infinity",
                                      desc => "How often the shim sends an HTTP/2 PING (default 10 s)."}},
               {keepalive_timeout, #{value => "Duration",
                                     desc => "No PING ACK within this: the connection is closed, waiting "
                                             "stanzas get the failure policy at once, and the shim "
                                             "reconnects (default 5 s)."}}],
      example =>
          [{"One sidecar:",
            ["modules:",
             "  mod_consult:",
             "    sidecar_host: \"127.0.0.1\"",
             "    sidecar_port: 50051",
             "    sidecar_token: \"3f6c0e...\"   # openssl rand -hex 24; the same in the sidecar's grpc.shims",
             "    timeout: 500 ms",
             "    failure_policy: reject",
             "    breaker_threshold: 5",
             "    breaker_cooldown: 5 s",
             "    keepalive_interval: 10 s",
             "    keepalive_timeout: 5 s"]},
           {"Two sidecars sharing the shops (each shop decided by the one holding its lease):",
            ["modules:",
             "  mod_consult:",
             "    sidecars:",
             "      - \"10.0.0.11:50051\"",
             "      - \"10.0.0.12:50051\"",
             "    sidecar_token: \"3f6c0e...\"",
             "    failure_policy: reject"]},
           {"Over TLS, with a client certificate (mutual TLS; the sidecar's grpc.tls has "
            "cert, key and clientCa):",
            ["modules:",
             "  mod_consult:",
             "    sidecars:",
             "      - \"sidecar1.example.net:50051\"",
             "      - \"sidecar2.example.net:50051\"",
             "    sidecar_token: \"3f6c0e...\"",
             "    sidecar_tls: true",
             "    sidecar_cafile: /etc/ejabberd/consult/ca.pem",
             "    sidecar_certfile: /etc/ejabberd/consult/shim.pem",
             "    sidecar_keyfile: /etc/ejabberd/consult/shim.key"]}]}.

%% One connection per sidecar, shared by all virtual hosts, each a child of
%% its own: it starts disconnected and never fails to start, so a missing
%% sidecar cannot take ejabberd down, and one sidecar's trouble stays on its
%% connection. The first is named consult_grpc, as when there was only one.
start_connections(Opts) ->
    Conn = conn_opts(Opts),
    Addrs = lists:zip(lists:seq(1, length(addresses(Conn))), addresses(Conn)),
    persistent_term:put(?CONN_OPTS, Conn),
    ?CONN:set_connections([conn_name(I) || {I, _} <- Addrs]),
    Dir = mnesia:system_info(directory),
    lists:foreach(
      fun({I, {Host, Port}}) ->
              Name = conn_name(I),
              Args = #{name => Name,
                       host => binary_to_list(Host),
                       port => Port,
                       token => maps:get(sidecar_token, Conn),
                       breaker_threshold => maps:get(breaker_threshold, Conn),
                       breaker_cooldown => maps:get(breaker_cooldown, Conn),
                       keepalive_interval => maps:get(keepalive_interval, Conn),
                       keepalive_timeout => maps:get(keepalive_timeout, Conn),
                       tls => tls_config(Conn, Host),
                       hosts => ejabberd_option:hosts(),
                       node => atom_to_binary(node(), utf8),
                       on_watch => {?MODULE, report_agents},
                       on_inject => {?MODULE, route_injected},
                       watch_file => filename:join(Dir, watch_file(I))},
              start_child(#{id => Name, start => {?CONN, start_link, [Args]}, restart => permanent,
                            shutdown => 2000, type => worker, modules => [?CONN]})
      end, Addrs).

start_child(#{id := Id} = Spec) ->
    case supervisor:start_child(ejabberd_gen_mod_sup, Spec) of
        {ok, _} -> ok;
        {error, {already_started, _}} -> ok;
        {error, already_present} ->
            {ok, _} = supervisor:restart_child(ejabberd_gen_mod_sup, Id),
            ok
    end.

stop_connections() ->
    lists:foreach(fun(Name) ->
                          _ = supervisor:terminate_child(ejabberd_gen_mod_sup, Name),
                          _ = supervisor:delete_child(ejabberd_gen_mod_sup, Name)
                  end, ?CONN:connections()).

conn_name(1) -> ?CONN;
conn_name(I) -> list_to_atom(atom_to_list(?CONN) ++ "_" ++ integer_to_list(I)).

%% consult_watch.term for the first, as before; relevance is the union of all
%% lists, so it does not matter which file a reordered list of sidecars reads.
watch_file(1) -> "consult_watch.term";
watch_file(I) -> "consult_watch_" ++ integer_to_list(I) ++ ".term".

%% The options of the node's connections, by option name.
conn_opts(Opts) ->
    maps:from_list([{K, gen_mod:get_opt(K, Opts)} || K <- ?CONN_OPTIONS]).

%% sidecars, or the one sidecar_host:sidecar_port.
addresses(#{sidecars := [], sidecar_host := Host, sidecar_port := Port}) -> [{Host, Port}];
addresses(#{sidecars := Addrs}) -> Addrs.

%% `ejabberdctl module_upgrade` purges and reloads mod_consult only: the
%% modules it ships with would keep running their old code. Load each one
%% whose loaded code differs from the beam next to mod_consult's.
load_helpers() ->
    case code:which(?MODULE) of
        Beam when is_list(Beam) ->
            Dir = filename:dirname(Beam),
            lists:foreach(fun(M) -> load_helper(M, filename:join(Dir, atom_to_list(M))) end, ?HELPERS);
        _ ->
            ok
    end.

load_helper(Mod, Base) ->
    case {code:is_loaded(Mod), beam_lib:md5(Base ++ ".beam")} of
        {{file, _}, {ok, {Mod, MD5}}} ->
            case Mod:module_info(md5) of
                MD5 -> ok;
                _ ->
                    _ = code:soft_purge(Mod),
                    case code:load_abs(Base) of
                        {module, Mod} -> ?INFO_MSG("consult: loaded the new code of ~ts", [Mod]);
                        {error, Why} -> ?WARNING_MSG("consult: cannot load ~ts.beam: ~p", [Base, Why])
                    end
            end;
        _ ->
            ok  % not loaded yet (the code path will find it) or not beside mod_consult
    end.

%%% Keeping the raw element of what a client sent

%% Kept only for what may be consult traffic: a copy rides along with every
%% message it is attached to, and plain chat should not pay for that.
-spec c2s_handle_recv(ejabberd_c2s:state(), fxml:xmlel(), stanza() | {error, term()}) -> ejabberd_c2s:state().
c2s_handle_recv(State, #xmlel{name = <<"message">>, attrs = Attrs} = El, Pkt) ->
    case may_be_consult(fxml:get_attr_s(<<"type">>, Attrs), Pkt) of
        true -> State#{consult_raw => El};
        false -> maps:remove(consult_raw, State)
    end;
c2s_handle_recv(State, _El, _Pkt) ->
    maps:remove(consult_raw, State).

may_be_consult(<<"consult">>, _) -> true;
may_be_consult(<<"readmark">>, _) -> true;
may_be_consult(_, #message{to = #jid{} = To}) -> ?CONN:watched(shop, bare(To));
may_be_consult(_, _) -> false.

-spec user_send_packet({stanza(), ejabberd_c2s:state()}) -> {stanza(), ejabberd_c2s:state()}.
user_send_packet({#message{} = Pkt0, State}) ->
    Pkt = strip_raw(Pkt0),  % only the server may say what gets written
    case maps:take(consult_raw, State) of
        {El, State1} -> {xmpp:put_meta(Pkt, consult_raw, strip_raw_el(El)), State1};
        error -> {Pkt, State}
    end;
user_send_packet(Acc) ->
    Acc.

%% The element the sidecar wrote, written as is (its attributes survive).
-spec c2s_filter_send({stanza() | fxml:xmlel(), ejabberd_c2s:state()}) ->
          {stanza() | fxml:xmlel(), ejabberd_c2s:state()}.
c2s_filter_send({#message{} = Pkt, State} = Acc) ->
    case wire_element(Pkt) of
        undefined -> Acc;
        El -> {El, force_mgmt_enqueue(State)}
    end;
c2s_filter_send(Acc) ->
    Acc.

wire_element(Pkt) ->
    case xmpp:get_meta(Pkt, consult_deliver, undefined) of
        undefined -> stored_element(Pkt);
        El -> El
    end.

%% A message back from offline storage: its raw element plus the storage's delay stamp.
stored_element(#message{sub_els = Els}) ->
    case [C || #xmlel{name = <<"raw">>, children = [#xmlel{} = C]} = W <- Els, is_raw_wrapper(W)] of
        [#xmlel{children = Children} = El | _] ->
            Delays = [encode_el(D) || D <- Els, is_delay(D)],
            El#xmlel{children = Children ++ Delays};
        [] -> undefined
    end.

is_raw_wrapper(#xmlel{name = <<"raw">>, attrs = Attrs}) -> fxml:get_attr_s(<<"xmlns">>, Attrs) == ?NS_RAW;
is_raw_wrapper(_) -> false.

is_delay(#delay{}) -> true;
is_delay(#xmlel{name = <<"delay">>, attrs = Attrs}) -> fxml:get_attr_s(<<"xmlns">>, Attrs) == ?NS_DELAY;
is_delay(_) -> false.

encode_el(#xmlel{} = El) -> El;
encode_el(Rec) -> xmpp:encode(Rec, ?NS_CLIENT).

%% Live delivery uses the meta; the child is for stored copies.
deliver_as(Pkt, El) ->
    Wrapper = #xmlel{name = <<"raw">>, attrs = [{<<"xmlns">>, ?NS_RAW}], children = [El]},
    xmpp:put_meta(xmpp:append_subtags(strip_raw(Pkt), [Wrapper]), consult_deliver, El).

strip_raw(Pkt) ->
    xmpp:set_els(Pkt, [E || E <- xmpp:get_els(Pkt), not is_raw_wrapper(E)]).

strip_raw_el(#xmlel{children = Children} = El) ->
    El#xmlel{children = [C || C <- Children, not is_raw_wrapper(C)]}.

%% Stream management counts and queues raw elements only when told to; without
%% this a client's ack of a raw element would exceed the server's count.
force_mgmt_enqueue(#{mgmt_state := S} = State) when S == active; S == pending; S == resumed ->
    State#{mgmt_force_enqueue => true};
force_mgmt_enqueue(State) ->
    State.

%%% The verdict

-spec filter_packet(stanza() | drop) -> stanza() | drop.
filter_packet(#message{type = error} = Pkt) ->
    Pkt;
filter_packet(#message{from = From} = Pkt0) ->
    %% A remote server cannot dictate what our clients get written either.
    Pkt = case ejabberd_router:is_my_host(From#jid.lserver) of
              true -> Pkt0;
              false -> strip_raw(Pkt0)
          end,
    case xmpp:get_meta(Pkt, consult_injected, false) of
        true -> Pkt;
        false ->
            %% Decided before any encoding: most traffic is not ours and must stay cheap.
            case is_relevant(Pkt, wire_type(Pkt)) of
                true -> ask_sidecar(Pkt, raw_element(Pkt));
                false -> Pkt
            end
    end;
filter_packet(Pkt) ->
    Pkt.

%% The client's element with the server-checked from/to, or the record encoded.
raw_element(#message{from = From, to = To} = Pkt) ->
    case xmpp:get_meta(Pkt, consult_raw, undefined) of
        #xmlel{attrs = Attrs} = El ->
            Attrs1 = lists:keydelete(<<"to">>, 1, lists:keydelete(<<"from">>, 1, Attrs)),
            El#xmlel{attrs = [{<<"from">>, jid:encode(From)}, {<<"to">>, jid:encode(To)} | Attrs1]};
        undefined ->
            xmpp:encode(Pkt)
    end.

%% The type the client wrote (ejabberd's record only knows the standard ones).
wire_type(#message{type = Type} = Pkt) ->
    case xmpp:get_meta(Pkt, consult_raw, undefined) of
        #xmlel{} = El -> fxml:get_tag_attr_s(<<"type">>, El);
        undefined -> atom_to_binary(Type, utf8)
    end.

is_relevant(#message{from = From, to = To}, Type) ->
    case Type of
        <<"consult">> -> true;
        <<"readmark">> ->
            ?CONN:watched(shop, bare(To)) orelse ?CONN:watched(agent, bare(To))
                orelse ?CONN:watched(agent, bare(From));
        _ -> ?CONN:watched(shop, bare(To))
    end.

bare(#jid{luser = U, lserver = S}) -> <<U/binary, $@, S/binary>>.

ask_sidecar(#message{from = From, to = To} = Pkt, Raw) ->
    #{timeout := Timeout, failure_policy := Policy} = settings(From#jid.lserver, To#jid.lserver),
    case ?CONN:filter(To#jid.lserver, target(To), fxml:element_to_binary(Raw), Timeout) of
        {ok, Verdict} -> apply_verdict(Verdict, Pkt, Raw);
        {error, Reason} -> sidecar_failed(Reason, Policy, Pkt, Raw)
    end.

%% Only the sidecar that owns a shop may decide what is addressed to it;
%% anything else needs no shop's state and may go to any sidecar.
target(To) ->
    Bare = bare(To),
    case ?CONN:watched(shop, Bare) of
        true -> Bare;
        false -> any
    end.

apply_verdict(#{action := Action, extra := Extra} = Verdict, Pkt, Raw) ->
    lists:foreach(fun route_stanza/1, Extra),
    case Action of
        pass -> deliver_as(Pkt, Raw);
        rewrite ->
            case decode(maps:get(stanza, Verdict)) of
                {ok, Pkt1, El} -> deliver_as(Pkt1, El);
                error -> bounce(Pkt, Raw, xmpp:err_internal_server_error(
                                            <<"The consult service produced an invalid message">>, lang(Pkt)))
            end;
        drop -> drop;
        reject -> bounce(Pkt, Raw, stanza_error(maps:get(error, Verdict), Pkt));
        Other ->
            ?WARNING_MSG("consult: unknown verdict action ~p", [Other]),
            bounce(Pkt, Raw, xmpp:err_internal_server_error(<<"Unknown consult verdict">>, lang(Pkt)))
    end.

%% Injected stanzas carry consult_injected so filter_packet lets them through
%% untouched (routing them re-enters filter_packet at once). A stanza without
%% from (the mstat ack) comes from the server itself.
route_stanza(Xml) ->
    case decode(Xml) of
        {ok, Pkt, El} ->
            Pkt1 = case xmpp:get_from(Pkt) of
                       undefined -> xmpp:set_from(Pkt, jid:make((xmpp:get_to(Pkt))#jid.lserver));
                       _ -> Pkt
                   end,
            ejabberd_router:route(xmpp:put_meta(deliver_as(Pkt1, El), consult_injected, true));
        error -> ok
    end.

%% Stanzas the sidecar sends on its own (timers, queue, admin actions).
-spec route_injected([binary()]) -> ok.
route_injected(Stanzas) ->
    lists:foreach(fun route_stanza/1, Stanzas).

decode(Xml) ->
    try fxml_stream:parse_element(Xml) of
        #xmlel{} = El ->
            Pkt = xmpp:decode(El, ?NS_CLIENT, [ignore_els]),
            case xmpp:get_to(Pkt) of
                undefined -> ?WARNING_MSG("consult: sidecar stanza without to: ~ts", [Xml]), error;
                _ -> {ok, Pkt, El}
            end;
        {error, Why} ->
            ?WARNING_MSG("consult: sidecar sent malformed XML (~p): ~ts", [Why, Xml]),
            error
    catch _:{xmpp_codec, Why} ->
            ?WARNING_MSG("consult: sidecar stanza rejected by the codec: ~ts", [xmpp:format_error(Why)]),
            error
    end.

sidecar_failed(Reason, pass, Pkt, _Raw) ->
    failure_warning(Reason, "delivered unrouted (failure_policy: pass)", Pkt),
    Pkt;
sidecar_failed(Reason, reject, #message{body = []}, _Raw) ->
    %% Typing notifications and the like: nothing worth an error.
    ?DEBUG("consult: sidecar ~p, dropping a message without body", [Reason]),
    drop;
sidecar_failed(no_owner, reject, #message{to = To} = Pkt, Raw) ->
    %% A takeover takes seconds: wait, as the sidecar itself says for a shop it does not own.
    failure_warning(no_owner, "bounced with service-unavailable", Pkt),
    Err = xmpp:err_service_unavailable(
            <<"No consult sidecar owns ", (bare(To))/binary, " right now; your message was not "
              "delivered. Please try again shortly.">>, lang(Pkt)),
    bounce(Pkt, Raw, Err#stanza_error{type = wait});
sidecar_failed(Reason, reject, Pkt, Raw) ->
    failure_warning(Reason, "bounced with service-unavailable", Pkt),
    bounce(Pkt, Raw, xmpp:err_service_unavailable(
                  <<"The customer-service router is unavailable; your message was not "
                    "delivered. Please try again shortly.">>, lang(Pkt))).

%% While the sidecar is down every consult message fails: one warning per
%% ?FAILURE_LOG_EVERY ms, counting the failures it did not log. Callers are
%% many c2s processes, hence atomics: slot 1 is when the next warning may be
%% logged (monotonic ms), slot 2 the failures since the last one.
new_failure_log() ->
    case persistent_term:get(?FAILURE_LOG, undefined) of
        undefined ->
            Ref = atomics:new(2, []),
            atomics:put(Ref, 1, erlang:monotonic_time(millisecond)),
            persistent_term:put(?FAILURE_LOG, Ref);
        _ ->
            ok
    end.

failure_warning(Reason, What, #message{from = From, to = To}) ->
    Ref = persistent_term:get(?FAILURE_LOG),
    Now = erlang:monotonic_time(millisecond),
    Next = atomics:get(Ref, 1),
    case Now >= Next andalso atomics:compare_exchange(Ref, 1, Next, Now + ?FAILURE_LOG_EVERY) =:= ok of
        true ->
            More = case atomics:exchange(Ref, 2, 0) of
                       0 -> "";
                       N -> io_lib:format(" (and ~b more failed since the previous warning)", [N])
                   end,
            ?WARNING_MSG("consult: ~ts: a message from ~ts to ~ts was ~ts~ts",
                         [failure_text(Reason, To), jid:encode(From), jid:encode(To), What, More]);
        false ->
            atomics:add(Ref, 2, 1)
    end.

failure_text(no_owner, To) -> ["no consult sidecar owns ", bare(To), " right now"];
failure_text(Reason, _To) -> io_lib:format("sidecar ~p", [Reason]).

%% The error goes back with the sender's own element (body id and all), so the
%% client can tell which message failed.
bounce(#message{from = From, to = To} = Pkt, #xmlel{attrs = Attrs, children = Children} = Raw, Err) ->
    Kept = [A || {K, _} = A <- Attrs, not lists:member(K, [<<"from">>, <<"to">>, <<"type">>])],
    ErrEl = Raw#xmlel{attrs = [{<<"from">>, jid:encode(To)}, {<<"to">>, jid:encode(From)},
                               {<<"type">>, <<"error">>} | Kept],
                      children = Children ++ [xmpp:encode(Err, ?NS_CLIENT)]},
    ErrPkt = xmpp:make_error(Pkt, Err),
    ejabberd_router:route(xmpp:put_meta(xmpp:put_meta(ErrPkt, consult_deliver, ErrEl),
                                        consult_injected, true)),  % errors are never stored
    drop.

stanza_error(#{condition := Cond, type := Type, text := Text}, Pkt) ->
    #stanza_error{type = error_type(Type), reason = error_condition(Cond),
                  text = xmpp:mk_text(Text, lang(Pkt))};
stanza_error(_, Pkt) ->
    xmpp:err_internal_server_error(<<"Rejected by the consult service">>, lang(Pkt)).

error_type(<<"modify">>) -> modify;
error_type(<<"auth">>) -> auth;
error_type(<<"wait">>) -> wait;
error_type(_) -> cancel.

%% Only RFC 6120 conditions the codec knows; anything else is undefined-condition.
error_condition(Cond) ->
    Known = [<<"bad-request">>, <<"conflict">>, <<"feature-not-implemented">>, <<"forbidden">>,
             <<"internal-server-error">>, <<"item-not-found">>, <<"jid-malformed">>,
             <<"not-acceptable">>, <<"not-allowed">>, <<"not-authorized">>,
             <<"policy-violation">>, <<"recipient-unavailable">>, <<"remote-server-not-found">>,
             <<"resource-constraint">>, <<"service-unavailable">>, <<"undefined-condition">>,
             <<"unexpected-request">>],
    case lists:member(Cond, Known) of
        true -> binary_to_atom(Cond, utf8);
        false -> 'undefined-condition'
    end.

lang(Pkt) -> xmpp:get_lang(Pkt).

%%% Notifications about agents (only agents: nobody else's sessions matter)

-spec sm_register_connection_hook(ejabberd_sm:sid(), jid(), ejabberd_sm:info()) -> ok.
sm_register_connection_hook(_SID, JID, _Info) ->
    notify_agent(JID, #{kind => session_open}).

-spec sm_remove_connection_hook(ejabberd_sm:sid(), jid(), ejabberd_sm:info()) -> ok.
sm_remove_connection_hook(_SID, JID, _Info) ->
    notify_agent(JID, #{kind => session_close}).

-spec set_presence_hook(binary(), binary(), binary(), presence()) -> ok.
set_presence_hook(User, Server, Resource, Presence) ->
    notify_agent(jid:make(User, Server, Resource), presence_set(Presence)).

presence_set(#presence{show = Show, priority = Prio, status = Status}) ->
    #{kind => presence_set, show => show(Show), priority => priority(Prio),
      status => xmpp:get_text(Status)}.

-spec unset_presence_hook(binary(), binary(), binary(), binary()) -> ok.
unset_presence_hook(User, Server, Resource, Status) ->
    notify_agent(jid:make(User, Server, Resource), #{kind => presence_unset, status => Status}).

%% To every sidecar: each keeps the presence of all agents.
notify_agent(#jid{} = JID, Event) ->
    case ?CONN:watched(agent, bare(JID)) of
        true -> ?CONN:notify(Event#{jid => jid:encode(JID)});
        false -> ok
    end;
notify_agent(_, _) ->
    ok.

%% After (re)connecting a sidecar knows nothing of who is online: report the
%% sessions and presence of the agents it watches to it (and, later, of those
%% its watch list adds).
-spec report_agents(atom(), [binary()]) -> ok.
report_agents(Conn, Agents) ->
    lists:foreach(fun(Bare) -> report_agent(Conn, Bare) end, Agents).

report_agent(Conn, Bare) ->
    #jid{luser = U, lserver = S} = jid:decode(Bare),
    lists:foreach(
      fun(R) ->
              JID = jid:encode(jid:make(U, S, R)),
              ?CONN:notify(Conn, #{kind => session_open, jid => JID}),
              case catch ejabberd_c2s:get_presence(ejabberd_sm:get_session_pid(U, S, R)) of
                  #presence{type = available} = P -> ?CONN:notify(Conn, (presence_set(P))#{jid => JID});
                  _ -> ok
              end
      end, ejabberd_sm:get_user_resources(U, S)).

show(undefined) -> <<>>;
show(Show) -> atom_to_binary(Show, utf8).

priority(undefined) -> 0;
priority(P) -> P.
