%% mod_consult's options once ejabberd has validated them: the connection
%% options, which every virtual host must agree on (the node has one
%% connection per sidecar), what consult_grpc gets for TLS, and the
%% per-host settings (timeout, failure_policy) every stanza's verdict path
%% reads without a gen_mod lookup.
-module(consult_options).

-export([conn_options/0, conn_opts/1, addresses/1, conflicts/2, conflict_text/3, changes/2, change/3,
         opt_text/1, tls_problems/1, tls_config/2, put_settings/2, forget_settings/1, settings/2]).

-define(SETTINGS, {mod_consult, settings}).
-define(DEFAULT_SETTINGS, #{timeout => 500, failure_policy => reject}).
%% Options of the node's connections to the sidecars: every virtual host must
%% agree on them. The others (timeout, failure_policy) are per host.
-define(CONN_OPTIONS, [sidecar_host, sidecar_port, sidecar_token, sidecars, breaker_threshold,
                       breaker_cooldown, keepalive_interval, keepalive_timeout, sidecar_tls,
                       sidecar_cafile, sidecar_certfile, sidecar_keyfile, sidecar_tls_server_name]).

-type conn_opts() :: #{atom() => term()}.
-export_type([conn_opts/0]).

-spec conn_options() -> [atom()].
conn_options() -> ?CONN_OPTIONS.

%% The options of the node's connections, by option name.
-spec conn_opts(gen_mod:opts()) -> conn_opts().
conn_opts(Opts) ->
    maps:from_list([{K, gen_mod:get_opt(K, Opts)} || K <- ?CONN_OPTIONS]).

%% sidecars, or the one sidecar_host:sidecar_port.
-spec addresses(conn_opts()) -> [{binary(), inet:port_number()}].
addresses(#{sidecars := [], sidecar_host := Host, sidecar_port := Port}) -> [{Host, Port}];
addresses(#{sidecars := Addrs}) -> Addrs.

%% Hosts (per ejabberd's current config) with mod_consult and other
%% connection options than Opts: [{Host, [{Option, Theirs, Ours}]}].
-spec conflicts(binary(), gen_mod:opts()) -> [{binary(), [{atom(), term(), term()}]}].
conflicts(Host, Opts) ->
    Mine = conn_opts(Opts),
    lists:filtermap(
      fun(Other) ->
              case lists:keyfind(mod_consult, 1, ejabberd_option:modules(Other)) of
                  {mod_consult, OtherOpts, _} ->
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

-spec conflict_text(binary(), [{binary(), [{atom(), term(), term()}]}], string()) -> iolist().
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

%% For a log line: " (opt: old -> new; ...)", or "" without old options.
-spec changes(undefined | conn_opts(), conn_opts()) -> iolist().
changes(undefined, _New) ->
    "";
changes(Old, New) ->
    [" (", lists:join("; ", [[atom_to_list(K), ": ", change(K, maps:get(K, Old), V)]
                             || {K, V} <- lists:sort(maps:to_list(New)), maps:get(K, Old) =/= V]), ")"].

-spec change(atom(), term(), term()) -> iolist().
change(sidecar_token, Old, New) ->
    %% Never in a log.
    case {Old, New} of
        {<<>>, _} -> "set";
        {_, <<>>} -> "removed";
        _ -> "replaced"
    end;
change(_Opt, Old, New) ->
    io_lib:format("~ts -> ~ts", [opt_text(Old), opt_text(New)]).

-spec opt_text(term()) -> iodata().
opt_text(undefined) -> "none";
opt_text(B) when is_binary(B) -> B;
opt_text(I) when is_integer(I) -> integer_to_list(I);
opt_text(A) when is_atom(A) -> atom_to_list(A);
opt_text({Host, Port}) -> [Host, $:, integer_to_list(Port)];
opt_text([]) -> "[]";
opt_text(L) when is_list(L) -> lists:join(", ", [opt_text(X) || X <- L]).

%% What the TLS options lack or have too much of, as sentences (none: fine).
-spec tls_problems(conn_opts()) -> [string()].
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
-spec tls_config(conn_opts(), binary()) -> false | consult_transport:tls_config().
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

%%% Per-host settings

-spec put_settings(binary(), gen_mod:opts()) -> ok.
put_settings(Host, Opts) ->
    Settings = persistent_term:get(?SETTINGS, #{}),
    Mine = #{timeout => gen_mod:get_opt(timeout, Opts),
             failure_policy => gen_mod:get_opt(failure_policy, Opts)},
    case Settings of
        #{Host := Mine} -> ok;
        _ -> persistent_term:put(?SETTINGS, Settings#{Host => Mine})
    end.

-spec forget_settings(binary()) -> ok.
forget_settings(Host) ->
    persistent_term:put(?SETTINGS, maps:remove(Host, persistent_term:get(?SETTINGS, #{}))).

%% The stanza's settings: those of the host it goes to, else of the host it
%% comes from, else any host's.
-spec settings(binary(), binary()) -> #{timeout := pos_integer(), failure_policy := reject | pass}.
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
