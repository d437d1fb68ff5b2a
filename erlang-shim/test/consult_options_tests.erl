%% EUnit tests for consult_options: mod_consult's validated options as the
%% connections, the log lines and the verdict path use them.
-module(consult_options_tests).

-include_lib("eunit/include/eunit.hrl").

%% The TLS options are connection options (every host must agree, a change
%% reconnects); by default there is no TLS.
tls_defaults_test() ->
    ?assertEqual([], consult_options:tls_problems(conn(#{}))),
    ?assertEqual(false, consult_options:tls_config(conn(#{}), <<"127.0.0.1">>)).

tls_problems_test_() ->
    Problems = fun(Opts) -> [lists:flatten(P) || P <- consult_options:tls_problems(conn(Opts))] end,
    [?_assertMatch(["sidecar_tls: true needs sidecar_cafile" ++ _], Problems(#{sidecar_tls => true})),
     ?_assertEqual([], Problems(#{sidecar_tls => true, sidecar_cafile => <<"/ca.pem">>})),
     ?_assertEqual([], Problems(#{sidecar_tls => true, sidecar_cafile => <<"/ca.pem">>,
                                  sidecar_certfile => <<"/shim.pem">>})),
     ?_assertMatch(["sidecar_keyfile is set but sidecar_certfile is not" ++ _],
                   Problems(#{sidecar_tls => true, sidecar_cafile => <<"/ca.pem">>,
                              sidecar_keyfile => <<"/shim.key">>})),
     ?_assertMatch(["sidecar_cafile, sidecar_tls_server_name set but sidecar_tls is false" ++ _],
                   Problems(#{sidecar_cafile => <<"/ca.pem">>, sidecar_tls_server_name => <<"x">>}))].

%% What each connection gets: the name to check is the sidecar's host unless overridden.
tls_config_test_() ->
    Tls = #{sidecar_tls => true, sidecar_cafile => <<"/etc/ca.pem">>},
    [?_assertEqual(#{cafile => "/etc/ca.pem", server_name => "10.0.0.11"},
                   consult_options:tls_config(conn(Tls), <<"10.0.0.11">>)),
     ?_assertEqual(#{cafile => "/etc/ca.pem", server_name => "sidecar.example.net"},
                   consult_options:tls_config(conn(Tls#{sidecar_tls_server_name => <<"sidecar.example.net">>}),
                                          <<"10.0.0.11">>)),
     ?_assertEqual(#{cafile => "/etc/ca.pem", server_name => "s1", certfile => "/etc/shim.pem",
                     keyfile => "/etc/shim.key"},
                   consult_options:tls_config(conn(Tls#{sidecar_certfile => <<"/etc/shim.pem">>,
                                                    sidecar_keyfile => <<"/etc/shim.key">>}), <<"s1">>))].

addresses_test_() ->
    [?_assertEqual([{<<"127.0.0.1">>, 50051}], consult_options:addresses(conn(#{}))),
     ?_assertEqual([{<<"a">>, 1}, {<<"b">>, 2}],
                   consult_options:addresses(conn(#{sidecars => [{<<"a">>, 1}, {<<"b">>, 2}]})))].

%% What a reload logs: a token never.
changes_test_() ->
    Text = fun(Old, New) -> lists:flatten(io_lib:format("~ts", [consult_options:changes(Old, New)])) end,
    Old = conn(#{}),
    [?_assertEqual("", Text(undefined, Old)),
     ?_assertEqual(" (sidecar_port: 50051 -> 50052)", Text(Old, Old#{sidecar_port := 50052})),
     ?_assertEqual(" (sidecar_token: set)", Text(Old, Old#{sidecar_token := <<"secret">>})),
     ?_assertEqual(" (sidecar_token: replaced)",
                   Text(Old#{sidecar_token := <<"a">>}, Old#{sidecar_token := <<"b">>})),
     ?_assertEqual(" (sidecars: [] -> 10.0.0.1:1, 10.0.0.2:2)",
                   Text(Old, Old#{sidecars := [{<<"10.0.0.1">>, 1}, {<<"10.0.0.2">>, 2}]}))].

conflict_text_test() ->
    Text = lists:flatten(io_lib:format("~ts", [consult_options:conflict_text(
                                                 <<"a.example">>,
                                                 [{<<"b.example">>, [{sidecar_port, 50052, 50051},
                                                                     {sidecar_token, <<"x">>, <<>>}]}],
                                                 "not started")])),
    ?assertMatch("consult: the virtual hosts disagree on options of the node's one sidecar connection "
                 "(sidecar_port: a.example 50051 here, 50052 on b.example; sidecar_token: a.example none "
                 "here, a token on b.example); not started." ++ _, Text).

%% A stanza's settings: those of the host it goes to, else of the one it
%% comes from, else any host's, else the defaults.
settings_test() ->
    Key = {mod_consult, settings},
    Saved = persistent_term:get(Key, undefined),
    try
        persistent_term:erase(Key),
        ?assertEqual(#{timeout => 500, failure_policy => reject}, consult_options:settings(<<"a">>, <<"b">>)),
        persistent_term:put(Key, #{<<"a">> => #{timeout => 1, failure_policy => pass},
                                   <<"b">> => #{timeout => 2, failure_policy => reject}}),
        ?assertMatch(#{timeout := 2}, consult_options:settings(<<"a">>, <<"b">>)),
        ?assertMatch(#{timeout := 1}, consult_options:settings(<<"a">>, <<"c">>)),
        ?assertMatch(#{timeout := _}, consult_options:settings(<<"x">>, <<"y">>)),
        consult_options:forget_settings(<<"b">>),
        ?assertMatch(#{timeout := 1}, consult_options:settings(<<"c">>, <<"b">>))
    after
        case Saved of
            undefined -> persistent_term:erase(Key);
            _ -> persistent_term:put(Key, Saved)
        end
    end.

%% mod_options with some of them replaced, as conn_opts sees them.
conn(Opts) ->
    maps:merge(maps:with(consult_options:conn_options(), maps:from_list(mod_consult:mod_options(<<"localhost">>))),
               Opts).
