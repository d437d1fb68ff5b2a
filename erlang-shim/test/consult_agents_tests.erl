%% EUnit tests for consult_agents: a node reports only the sessions it holds,
%% and a sidecar's ReportPresence makes a connection report its watched agents
%% again (through consult_grpc_conn, against consult_fake_sidecar).
-module(consult_agents_tests).

-include_lib("eunit/include/eunit.hrl").

-export([on_watch/2]).

-import(consult_fake_sidecar, [start/2, accept/1, out/2, grpc_frame/1, field/2, watch_bytes/0]).

-define(WATCHER, consult_agents_test_watcher).

%%% Which sessions a node reports

%% A pid of another node, as a message from it would carry (NEW_PID_EXT).
remote_pid(Node) ->
    Name = atom_to_binary(Node, utf8),
    binary_to_term(<<131, 88, 119, (byte_size(Name)), Name/binary, 42:32, 0:32, 1:32>>).

local_sessions_test_() ->
    Here = self(),
    There = remote_pid('other@host'),
    [{"the pid built for the test is another node's",
      ?_assertEqual('other@host', node(There))},
     {"only sessions whose process runs on this node are kept, in order",
      ?_assertEqual([{<<"pc">>, Here}, {<<"phone">>, Here}],
                    consult_agents:local_sessions(node(), [{<<"pc">>, Here}, {<<"web">>, There},
                                                           {<<"phone">>, Here}]))},
     {"another node keeps only its own",
      ?_assertEqual([{<<"web">>, There}],
                    consult_agents:local_sessions('other@host', [{<<"pc">>, Here}, {<<"web">>, There}]))},
     {"a resource whose session is gone (no pid) is left out",
      ?_assertEqual([], consult_agents:local_sessions(node(), [{<<"pc">>, none}]))},
     {"no sessions, nothing to report",
      ?_assertEqual([], consult_agents:local_sessions(node(), []))}].

%%% ReportPresence through a connection

on_watch(Name, Agents) -> ?WATCHER ! {watch, Name, Agents}.

report_presence_test_() ->
    {setup,
     fun consult_fake_sidecar:setup/0,
     fun(L) ->
             catch unregister(?WATCHER),
             consult_fake_sidecar:cleanup(L)
     end,
     fun(L) -> {"each ReportPresence reports the watched agents again, as a reconnect does",
                {timeout, 30, fun() -> reported_again_when_asked(L) end}} end}.

%% The watch list's agents are reported once; each ReportPresence reports them
%% all again; a reconnect reports them again without being asked.
reported_again_when_asked(L) ->
    register_here(),
    start(L, #{on_watch => {?MODULE, on_watch}}),
    Srv = accept(L),
    out(Srv, consult_h2:data(1, grpc_frame(watch_bytes()), false)),
    ?assertEqual({watch, consult_grpc, [<<"agent@localhost">>]}, received()),
    ?assertEqual(nothing, received(200)),
    ReportPresence = consult_h2:data(1, grpc_frame(field(4, <<>>)), false),
    out(Srv, ReportPresence),
    ?assertEqual({watch, consult_grpc, [<<"agent@localhost">>]}, received()),
    out(Srv, ReportPresence),
    ?assertEqual({watch, consult_grpc, [<<"agent@localhost">>]}, received()),
    ?assertEqual(nothing, received(200)),
    %% The sidecar goes and comes back: a new connection gets its report once its watch list comes.
    gen_tcp:close(consult_fake_sidecar:sock(Srv)),
    Srv2 = accept(L),
    out(Srv2, consult_h2:data(1, grpc_frame(watch_bytes()), false)),
    ?assertEqual({watch, consult_grpc, [<<"agent@localhost">>]}, received()).

%% setup runs in another process than the test.
register_here() ->
    catch unregister(?WATCHER),
    register(?WATCHER, self()).

received() -> received(5000).

received(Ms) ->
    receive {watch, _, _} = M -> M after Ms -> nothing end.
