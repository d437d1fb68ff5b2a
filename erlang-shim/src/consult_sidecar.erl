%% The sidecar protocol above gRPC, for one connection: what the shim says
%% on the FilterStream (Hello, ClusterEvent, InjectAck) and what it does
%% with what the sidecar says (WatchList, Inject; verdicts go back to the
%% connection, which knows the callers).
%%
%% It writes these rows of the connection's ETS table, which callers read
%% with watched/3, claim/2 and told/1 without messaging the connection:
%%   {{shop | agent, Jid}, Gen}  the latest watch list (of any connection,
%%                               connected or not: what makes a stanza relevant)
%%   {{owned, Shop}, Claim}      the shops its sidecar decides now ({Epoch, Since})
%%   {told, true}                its sidecar said what it owns since it connected
%% The latest watch list is also kept in a file, so that after a restart the
%% shim knows which JIDs matter before the sidecar answers.
-module(consult_sidecar).

-export([new/3, hello/3, cluster_event/2, inject_ack/1, erase_user_ack/1, message/4, connected/1, disconnected/1,
         status/1, watched/3, claim/2, told/1, owned/1]).
-export_type([state/0]).

-include("logger.hrl").

-record(sidecar, {
    tab :: atom(),                  %% the connection's ETS table (and registered name)
    authority :: binary(),          %% host:port, for log lines
    watch_gen = 0 :: non_neg_integer(),
    %% The shops the sidecar decides now, as it said on the current connection.
    claims = #{} :: consult_owners:claims(),
    sidecar_id = <<>> :: binary(),  %% WatchList.sidecar
    %% The agents reported to on_watch since the current connection was made.
    reported = #{} :: #{binary() => true},
    on_watch = undefined :: undefined | {module(), atom()},
    on_inject = undefined :: undefined | {module(), atom()},
    on_erase = undefined :: undefined | {module(), atom()},
    watch_file = undefined :: undefined | file:filename()
}).
-opaque state() :: #sidecar{}.

%% on_watch is called as M:F(Tab, Agents) with the agents of a watch list
%% not yet reported on this connection; on_inject as M:F(Stanzas); on_erase
%% as M:F(Jid, Account), returning an erase_user_ack() without its id. Loads
%% the watch file, if any, into the table.
-spec new(atom(), binary(), #{on_watch => {module(), atom()}, on_inject => {module(), atom()},
                             on_erase => {module(), atom()},
                             watch_file => file:filename(), atom() => term()}) -> state().
new(Tab, Authority, Opts) ->
    S = #sidecar{tab = Tab, authority = Authority,
                 on_watch = maps:get(on_watch, Opts, undefined),
                 on_inject = maps:get(on_inject, Opts, undefined),
                 on_erase = maps:get(on_erase, Opts, undefined),
                 watch_file = maps:get(watch_file, Opts, undefined)},
    load_watch(S).

%%% What the shim says

%% The cluster as this node sees it now, itself first; changes come as
%% ClusterEvents while the stream lasts.
-spec hello(binary(), [binary()], binary()) -> iodata().
hello(Node, Hosts, Version) ->
    consult_pb:encode_shim_message(
      {hello, #{node => Node, hosts => Hosts, shim_version => Version,
                cluster_nodes => [Node | [atom_to_binary(N, utf8) || N <- nodes()]],
                features => [<<"structured-verdict">>]}}).

-spec cluster_event(node(), boolean()) -> iodata().
cluster_event(Node, Up) ->
    consult_pb:encode_shim_message({cluster, #{node => atom_to_binary(Node, utf8), up => Up}}).

-spec inject_ack(pos_integer()) -> iodata().
inject_ack(Id) ->
    consult_pb:encode_shim_message({inject_ack, #{id => Id}}).

-spec erase_user_ack(consult_pb:erase_user_ack()) -> iodata().
erase_user_ack(Ack) ->
    consult_pb:encode_shim_message({erase_user_ack, Ack}).

%%% What the sidecar says

%% One SidecarMessage from the connection ConnRef; Role: a draining
%% connection's sidecar is going away and decides nothing more. Runs in the
%% connection process: an Inject's ack comes back to it as the cast
%% {inject_ack, ConnRef, Id} once on_inject has routed the stanzas, an
%% EraseUser's as {erase_user_ack, ConnRef, Ack} once on_erase is done.
%% A verdict comes with its seq and its bytes, which its caller decodes.
-spec message(binary(), current | draining, reference(), state()) ->
          {verdict, non_neg_integer(), binary(), state()} | {ok, state()}.
message(Msg, Role, ConnRef, S) ->
    case consult_pb:peek_sidecar_message(Msg) of
        {verdict, Seq, V} ->
            {verdict, Seq, V, S};
        {watch, W} ->
            S1 = store_watch(W, S),
            save_watch(W, S1),
            case Role of
                current -> {ok, report_agents(W, own(W, S1))};
                draining -> {ok, S1}
            end;
        report_presence when Role =:= current ->
            %% Asked again (a node came back after a split): every watched agent is reported anew.
            run_on_watch(maps:keys(S#sidecar.reported), S),
            {ok, S};
        report_presence ->
            {ok, S};
        {inject, #{stanzas := Stanzas, id := Id} = Inject} ->
            run_on_inject(Stanzas, maps:get(keys, Inject, []), Id, ConnRef, S),
            {ok, S};
        {erase_user, Erase} ->
            run_on_erase(Erase, ConnRef, S),
            {ok, S};
        {unknown, _} ->
            {ok, S}
    end.

%% A new connection: its sidecar gets every agent reported again.
-spec connected(state()) -> state().
connected(S) -> S#sidecar{reported = #{}}.

%% A connection that is not up decides nothing: its sidecar may have lost
%% its shops to another while we could not hear it.
-spec disconnected(state()) -> state().
disconnected(S = #sidecar{tab = Tab}) ->
    ets:delete(Tab, told),
    disown(S).

-spec status(state()) -> #{sidecar_id := binary(), owned := non_neg_integer()}.
status(#sidecar{sidecar_id = Id, claims = Claims}) ->
    #{sidecar_id => Id, owned => map_size(Claims)}.

%%% Read by callers from a connection's table

-spec watched(atom(), shop | agent, binary()) -> boolean().
watched(Tab, Kind, BareJid) ->
    try ets:member(Tab, {Kind, BareJid})
    catch error:badarg -> false
    end.

%% [Claim] when the connection's sidecar owns the shop, else [].
-spec claim(atom(), binary()) -> [consult_owners:claim()].
claim(Tab, Shop) ->
    try ets:lookup(Tab, {owned, Shop}) of
        [{_, Since}] -> [Since];
        [] -> []
    catch error:badarg -> []
    end.

-spec told(atom()) -> boolean().
told(Tab) ->
    try ets:member(Tab, told)
    catch error:badarg -> false
    end.

%% The shops the connection's sidecar decides now and the lease epoch of each,
%% sorted (for ejabberdctl consult_owned; stanzas use claim/2).
-spec owned(atom()) -> [{binary(), non_neg_integer()}].
owned(Tab) ->
    try lists:sort([{Shop, Epoch} || [Shop, Epoch] <- ets:match(Tab, {{owned, '$1'}, {'$2', '_'}})])
    catch error:badarg -> []
    end.

%%% Watch lists and claims

%% The owner learns which JIDs matter only now (e.g. to report the agents'
%% current sessions after a reconnect): it gets the agents this connection
%% has not reported yet, and runs apart so it cannot block us.
report_agents(#{agents := Agents}, S = #sidecar{reported = Reported}) ->
    run_on_watch([A || A <- Agents, not maps:is_key(A, Reported)], S),
    S#sidecar{reported = maps:from_list([{A, true} || A <- Agents])}.

run_on_watch([], _S) -> ok;
run_on_watch(_New, #sidecar{on_watch = undefined}) -> ok;
run_on_watch(New, #sidecar{tab = Name, on_watch = {M, F}}) -> _ = spawn(M, F, [Name, New]), ok.

%% The shops this sidecar decides now replace those it decided: a shop it
%% stops listing goes to whoever lists it (or nobody) from the next stanza.
own(#{owned := Owned, sidecar := Id} = W, S = #sidecar{tab = Tab, claims = Claims}) ->
    {Claims1, Added, Removed} = consult_owners:claim(Claims, with_epochs(Owned, maps:get(epochs, W, [])),
                                                     erlang:unique_integer([monotonic])),
    ets:insert(Tab, [{{owned, Shop}, Since} || {Shop, Since} <- Added] ++ [{told, true}]),
    lists:foreach(fun(Shop) -> ets:delete(Tab, {owned, Shop}) end, Removed),
    case {Added, Removed} of
        {[], []} -> ok;
        _ -> ?INFO_MSG("consult_grpc: sidecar ~ts~ts decides ~b shops now (+~b~ts, -~b~ts)",
                       [S#sidecar.authority, id_text(Id), map_size(Claims1), length(Added),
                        some([Shop || {Shop, _} <- Added]), length(Removed), some(Removed)])
    end,
    S#sidecar{claims = Claims1, sidecar_id = Id}.

%% The epochs go with the shops in order; a list without them (or of another
%% length: a sidecar that gets it wrong) claims at epoch 0.
with_epochs(Owned, Epochs) when length(Owned) =:= length(Epochs) -> lists:zip(Owned, Epochs);
with_epochs(Owned, _) -> Owned.

disown(S = #sidecar{claims = Claims}) when map_size(Claims) =:= 0 ->
    S;
disown(S = #sidecar{tab = Tab, claims = Claims}) ->
    ets:match_delete(Tab, {{owned, '_'}, '_'}),
    ?INFO_MSG("consult_grpc: sidecar ~ts~ts disconnected, its ~b shops have no owner here until "
              "a sidecar claims them", [S#sidecar.authority, id_text(S#sidecar.sidecar_id), map_size(Claims)]),
    S#sidecar{claims = #{}}.

id_text(<<>>) -> "";
id_text(Id) -> [" (", Id, ")"].

%% A few names for a log line.
some([]) -> "";
some(Shops) when length(Shops) =< 5 -> [": ", lists:join(", ", Shops)];
some(Shops) -> [": ", lists:join(", ", lists:sublist(Shops, 5)), ", ..."].

%% Insert the new list, then delete whatever is left from older ones, so
%% readers never see an empty table in between.
store_watch(#{shops := Shops, agents := Agents}, S = #sidecar{tab = Tab, watch_gen = G}) ->
    Gen = G + 1,
    ets:insert(Tab, [{{shop, J}, Gen} || J <- Shops] ++ [{{agent, J}, Gen} || J <- Agents]),
    ets:select_delete(Tab, [{{{Kind, '_'}, '$1'}, [{'=/=', '$1', Gen}], [true]} || Kind <- [shop, agent]]),
    S#sidecar{watch_gen = Gen}.

%% Not what it owned: that may have changed by the time the file is read.
save_watch(_W, #sidecar{watch_file = undefined}) -> ok;
save_watch(#{shops := Shops, agents := Agents}, #sidecar{watch_file = File}) ->
    case file:write_file(File, term_to_binary(#{shops => Shops, agents => Agents})) of
        ok -> ok;
        {error, Why} -> ?WARNING_MSG("consult_grpc: cannot save the watch list to ~ts: ~p", [File, Why])
    end.

load_watch(S = #sidecar{watch_file = undefined}) -> S;
load_watch(S = #sidecar{watch_file = File}) ->
    case file:read_file(File) of
        {ok, Bin} ->
            try binary_to_term(Bin, [safe]) of
                #{shops := _, agents := _} = W -> store_watch(W, S);
                _ -> S
            catch _:_ -> S
            end;
        {error, _} -> S
    end.

%%% Inject

%% The callback routes the stanzas apart too; only when it returns is the
%% Inject acknowledged (id 0: no ack wanted). A crash sends no ack, so the
%% sidecar sends the stanzas again. With no callback nothing was routed: no ack.
%% Keyed stanzas (kept messages) whose key was routed already, by any
%% connection, are not routed again (consult_inject_keys); the Inject is
%% acknowledged all the same.
run_on_inject(_Stanzas, _Keys, _Id, _Ref, #sidecar{on_inject = undefined}) -> ok;
run_on_inject(Stanzas, Keys, Id, Ref, #sidecar{on_inject = {M, F}}) ->
    Conn = self(),
    _ = spawn(fun() ->
                      case consult_inject_keys:claim(Keys, Stanzas) of
                          [] -> ok;
                          Route -> _ = M:F(Route)
                      end,
                      Id =:= 0 orelse gen_server:cast(Conn, {inject_ack, Ref, Id})
              end),
    ok.

%%% Erasure

%% Runs apart (ejabberd's storage may be slow); the ack says what was done or
%% what failed. Without a callback nothing can be erased here: an error says so.
run_on_erase(#{id := Id} = Erase, Ref, S) ->
    Conn = self(),
    _ = spawn(fun() ->
                      Ack = erase(Erase, S),
                      gen_server:cast(Conn, {erase_user_ack, Ref, Ack#{id => Id}})
              end),
    ok.

erase(_Erase, #sidecar{on_erase = undefined}) ->
    #{offline => false, mam => false, account => false, error => <<"this shim erases nothing">>,
      node => atom_to_binary(node(), utf8)};
erase(#{jid := Jid, account := Account}, #sidecar{on_erase = {M, F}}) ->
    try M:F(Jid, Account)
    catch Class:Why ->
            ?WARNING_MSG("consult: erasing ~ts failed: ~p:~p", [Jid, Class, Why]),
            #{offline => false, mam => false, account => false,
              error => iolist_to_binary(io_lib:format("~p", [Why])), node => atom_to_binary(node(), utf8)}
    end.
