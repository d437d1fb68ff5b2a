%% The shim's memory of the kept messages it handed to agents, so that each
%% reaches the agent once even when a sidecar dies between the shim's routing
%% and its own record of the ack, and sends the batch again (or another
%% sidecar, taking the shop over, does).
%%
%% A kept message's Inject carries one key per stanza, the same from every
%% sidecar: <<"Shop\nVisitor\nAt\nBodyId\nDigest">>. Rows of the table:
%%   {{routed, Key}, ExpiresAt}                   routed once: not again
%%   {{bounced, Shop, Visitor, BodyId}, {BouncedAt, ExpiresAt}}
%%       the visitor was told service-unavailable for this message while the
%%       sidecar may have kept it: a kept copy from before the bounce
%%       (At =< BouncedAt) is not routed either, so a bounced message never
%%       reaches the agent (a resend by the visitor, kept later, does).
%% Bounded in count (the oldest go first) and each row expires. The table is
%% owned by this small process, started by mod_consult beside the connections:
%% it outlives a connection's restart. Without the table everything is routed.
-module(consult_inject_keys).
-behaviour(gen_server).

-export([start_link/0, new_table/1, claim/2, claim/4, bounced/3, bounced/5, sweep/3]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(TAB, consult_inject_keys).
-define(ROUTED_TTL, 15 * 60 * 1000).       %% ms a routed key is remembered
-define(BOUNCED_TTL, 24 * 60 * 60 * 1000). %% ms a bounce is remembered
-define(MAX, 200000).                      %% rows at most
-define(SWEEP_EVERY, 10000).

-type opts() :: #{routed_ttl => pos_integer(), bounced_ttl => pos_integer(), max => pos_integer()}.

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() -> gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% A public table of that name, owned by the caller.
-spec new_table(atom()) -> atom().
new_table(Tab) ->
    ets:new(Tab, [named_table, public, set, {write_concurrency, true}, {read_concurrency, true}]).

%% The stanzas to route: those without a key, or whose key was not routed
%% (and whose message was not bounced) before. Their keys are remembered.
-spec claim([binary()], [binary()]) -> [binary()].
claim(Keys, Stanzas) -> claim(?TAB, Keys, Stanzas, #{}).

-spec claim(atom(), [binary()], [binary()], opts()) -> [binary()].
claim(_Tab, [], Stanzas, _Opts) -> Stanzas;
claim(Tab, Keys, Stanzas, Opts) when length(Keys) =:= length(Stanzas) ->
    Now = erlang:system_time(millisecond),
    try
        Route = [S || {K, S} <- lists:zip(Keys, Stanzas), fresh(Tab, K, Now, Opts)],
        Max = maps:get(max, Opts, ?MAX),
        case ets:info(Tab, size) > Max of
            true -> sweep(Tab, Now, Max);
            false -> ok
        end,
        Route
    catch error:badarg -> Stanzas  %% no table: nothing remembered
    end;
claim(_Tab, _Keys, Stanzas, _Opts) -> Stanzas.  %% not one key per stanza: not ours to judge

fresh(_Tab, <<>>, _Now, _Opts) -> true;
fresh(Tab, Key, Now, Opts) ->
    Row = {{routed, Key}, Now + maps:get(routed_ttl, Opts, ?ROUTED_TTL)},
    Seen = case ets:insert_new(Tab, Row) of
               true -> false;
               false ->
                   case ets:lookup(Tab, {routed, Key}) of
                       [{_, Expires}] when Expires > Now -> true;
                       _ -> ets:insert(Tab, Row), false
                   end
           end,
    not Seen andalso not was_bounced(Tab, Key, Now).

was_bounced(Tab, Key, Now) ->
    case binary:split(Key, <<"\n">>, [global]) of
        [Shop, Visitor, At, BodyId | _] when BodyId =/= <<>> ->
            case ets:lookup(Tab, {bounced, Shop, Visitor, BodyId}) of
                [{_, {BouncedAt, Expires}}] when Expires > Now ->
                    try binary_to_integer(At) =< BouncedAt
                    catch error:badarg -> false
                    end;
                _ -> false
            end;
        _ -> false
    end.

%% The shim bounced a message of Visitor to Shop (body id BodyId) after it
%% may have reached the sidecar: a kept copy must not reach the agent.
-spec bounced(binary(), binary(), binary()) -> ok.
bounced(Shop, Visitor, BodyId) -> bounced(?TAB, Shop, Visitor, BodyId, #{}).

-spec bounced(atom(), binary(), binary(), binary(), opts()) -> ok.
bounced(_Tab, _Shop, _Visitor, <<>>, _Opts) -> ok;
bounced(Tab, Shop, Visitor, BodyId, Opts) ->
    Now = erlang:system_time(millisecond),
    try ets:insert(Tab, {{bounced, Shop, Visitor, BodyId}, {Now, Now + maps:get(bounced_ttl, Opts, ?BOUNCED_TTL)}})
    catch error:badarg -> ok
    end,
    ok.

%% Drops expired rows, then the oldest beyond Max.
-spec sweep(atom(), integer(), pos_integer()) -> ok.
sweep(Tab, Now, Max) ->
    try
        _ = ets:select_delete(Tab, [{{'_', '$1'}, [{is_integer, '$1'}, {'=<', '$1', Now}], [true]},
                                    {{'_', {'_', '$1'}}, [{'=<', '$1', Now}], [true]}]),
        case ets:info(Tab, size) - Max of
            Over when Over > 0 ->
                Rows = ets:select(Tab, [{{'$1', '$2'}, [{is_integer, '$2'}], [{{'$2', '$1'}}]},
                                        {{'$1', {'_', '$2'}}, [], [{{'$2', '$1'}}]}]),
                lists:foreach(fun({_, K}) -> ets:delete(Tab, K) end,
                              lists:sublist(lists:sort(Rows), Over));
            _ -> ok
        end
    catch error:badarg -> ok
    end,
    ok.

%%% The owner

init([]) ->
    new_table(?TAB),
    erlang:send_after(?SWEEP_EVERY, self(), sweep),
    {ok, #{}}.

handle_call(_Req, _From, St) -> {reply, ok, St}.
handle_cast(_Msg, St) -> {noreply, St}.

handle_info(sweep, St) ->
    sweep(?TAB, erlang:system_time(millisecond), ?MAX),
    erlang:send_after(?SWEEP_EVERY, self(), sweep),
    {noreply, St};
handle_info(_Msg, St) -> {noreply, St}.
