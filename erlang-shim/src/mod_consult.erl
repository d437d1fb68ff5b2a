%%% mod_consult: hands consult traffic to the routing sidecar over gRPC and
%%% applies its verdict (pass / rewrite / drop / reject, plus extra stanzas).
%%%
%%% This module is what ejabberd sees: the gen_mod callbacks, the options and
%%% their documentation, the hooks, and the node's connections to the
%%% sidecars. The work is elsewhere: consult_stanza keeps the raw elements,
%%% consult_verdict asks the sidecar and applies its verdict, consult_agents
%%% tells the sidecars about agents, consult_options reads the options, and
%%% consult_grpc is the link to the sidecars.
-module(mod_consult).
-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_opt_type/1, mod_doc/0]).

-include("logger.hrl").

-define(CONN, consult_grpc).
-define(CONN_OPTS, {?MODULE, conn_opts}).
%% Shipped with mod_consult, in load order.
-define(HELPERS, [consult_hpack, consult_h2, consult_h2_machine, consult_pb, consult_owners,
                  consult_breaker, consult_transport, consult_sidecar, consult_grpc, consult_grpc_conn,
                  consult_options, consult_stanza, consult_verdict, consult_agents, consult_inject_keys,
                  consult_status, consult_commands, consult_erase, consult_timing]).
-define(GLOBAL_HOOK, {filter_packet, consult_verdict, filter_packet, 50}).
-define(HOST_HOOKS, [{c2s_handle_recv, consult_stanza, c2s_handle_recv, 50},
                     {user_send_packet, consult_stanza, user_send_packet, 1},
                     {c2s_filter_send, consult_stanza, c2s_filter_send, 1000},
                     {sm_register_connection_hook, consult_agents, sm_register_connection_hook, 50},
                     {sm_remove_connection_hook, consult_agents, sm_remove_connection_hook, 50},
                     {set_presence_hook, consult_agents, set_presence_hook, 50},
                     {unset_presence_hook, consult_agents, unset_presence_hook, 50}]).

%%% gen_mod

%% A host whose connection options differ from another host's is refused:
%% the node has one connection, and silently taking one host's options over
%% another's would be worse than a clear error.
-spec start(binary(), gen_mod:opts()) -> ok | {error, term()}.
start(Host, Opts) ->
    case {consult_options:tls_problems(consult_options:conn_opts(Opts)), consult_options:conflicts(Host, Opts)} of
        {[_ | _] = Problems, _} ->
            ?CRITICAL_MSG("consult: ~ts; mod_consult not started for ~ts", [lists:join("; ", Problems), Host]),
            {error, {bad_tls_options, Problems}};
        {[], []} ->
            consult_options:put_settings(Host, Opts),
            consult_verdict:new_failure_log(),
            consult_grpc:new_counters(),
            load_helpers(),
            consult_timing:start(),
            ok = start_connections(Opts),
            %% ejabberdctl consult_status / consult_owned, once for the node.
            gen_mod:is_loaded_elsewhere(Host, ?MODULE) orelse consult_commands:register_commands(),
            %% filter_packet is global: adding it again for another host is a no-op.
            {Hook, Mod, Fun, Seq} = ?GLOBAL_HOOK,
            ejabberd_hooks:add(Hook, global, Mod, Fun, Seq),
            [ejabberd_hooks:add(H, Host, M, F, S) || {H, M, F, S} <- ?HOST_HOOKS],
            ok;
        {[], Conflicts} ->
            ?CRITICAL_MSG("~ts", [consult_options:conflict_text(Host, Conflicts, "mod_consult not started for this host")]),
            {error, {conflicting_connection_options, Conflicts}}
    end.

-spec stop(binary()) -> ok.
stop(Host) ->
    [ejabberd_hooks:delete(H, Host, M, F, S) || {H, M, F, S} <- ?HOST_HOOKS],
    consult_options:forget_settings(Host),
    case gen_mod:is_loaded_elsewhere(Host, ?MODULE) of
        true -> ok;
        false ->
            consult_commands:unregister_commands(),
            {Hook, Mod, Fun, Seq} = ?GLOBAL_HOOK,
            ejabberd_hooks:delete(Hook, global, Mod, Fun, Seq),
            stop_connections(),
            _ = supervisor:terminate_child(ejabberd_gen_mod_sup, consult_inject_keys),
            _ = supervisor:delete_child(ejabberd_gen_mod_sup, consult_inject_keys),
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
    [?INFO_MSG("consult: ~ts for ~ts changed: ~ts", [Opt, Host, consult_options:change(Opt, Old, New)])
     || {Opt, Old, New} <- [{O, gen_mod:get_opt(O, OldOpts), gen_mod:get_opt(O, NewOpts)}
                            || O <- [timeout, failure_policy]],
        Old =/= New],
    consult_options:put_settings(Host, NewOpts),
    Current = persistent_term:get(?CONN_OPTS, undefined),
    case consult_options:conn_opts(NewOpts) of
        Current -> ok;
        New ->
            case {consult_options:tls_problems(New), consult_options:conflicts(Host, NewOpts)} of
                {[_ | _] = Problems, _} ->
                    ?CRITICAL_MSG("consult: ~ts; the new connection options are not applied",
                                  [lists:join("; ", Problems)]),
                    ok;
                {[], []} ->
                    ?INFO_MSG("consult: sidecar settings changed, reconnecting to ~ts~ts",
                              [consult_options:opt_text(consult_options:addresses(New)),
                               consult_options:changes(Current, New)]),
                    stop_connections(),
                    start_connections(NewOpts);
                {[], Conflicts} ->
                    ?CRITICAL_MSG("~ts", [consult_options:conflict_text(Host, Conflicts,
                                                                        "the new connection options are not applied")]),
                    ok
            end
    end.

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

%%% The node's connections

%% One connection per sidecar, shared by all virtual hosts, each a child of
%% its own: it starts disconnected and never fails to start, so a missing
%% sidecar cannot take ejabberd down, and one sidecar's trouble stays on its
%% connection. The first is named consult_grpc, as when there was only one.
start_connections(Opts) ->
    %% The memory of routed kept messages outlives the connections (and reloads).
    start_child(#{id => consult_inject_keys, start => {consult_inject_keys, start_link, []},
                  restart => permanent, shutdown => 2000, type => worker, modules => [consult_inject_keys]}),
    Conn = consult_options:conn_opts(Opts),
    Addrs = lists:zip(lists:seq(1, length(consult_options:addresses(Conn))), consult_options:addresses(Conn)),
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
                       tls => consult_options:tls_config(Conn, Host),
                       hosts => ejabberd_option:hosts(),
                       node => atom_to_binary(node(), utf8),
                       on_watch => {consult_agents, report_agents},
                       on_inject => {consult_verdict, route_injected},
                       on_erase => {consult_erase, erase_user},
                       watch_file => filename:join(Dir, watch_file(I))},
              start_child(#{id => Name, start => {?CONN, start_link, [Args]}, restart => permanent,
                            shutdown => 2000, type => worker, modules => [consult_grpc_conn]})
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
